"""`dltrain serve`: a checkpoint or an ONNX export behind HTTP (FastAPI on uvicorn), batched.

Nothing is imported here: `dltrain.serve.server.serve` is the entry point, and the ONNX
path never imports torch.
"""
