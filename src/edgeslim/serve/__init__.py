"""Serving: the tail/inference server (FastAPI) and the torch-free device client.

Import the submodules directly (``edgeslim.serve.client``, ``edgeslim.serve.tensor_format``):
this package file imports nothing heavy, so a device can use the client without FastAPI.
"""
