"""`python -m dltrain` and the `dltrain` command: the CLI, with a Ctrl-C during start-up handled too."""

import sys


def main() -> None:
    try:
        from .cli import run
    except KeyboardInterrupt:  # Ctrl-C while the CLI imports (seconds, for torch): one line, as anywhere else
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    run()


if __name__ == "__main__":
    main()
