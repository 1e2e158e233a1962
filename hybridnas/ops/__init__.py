"""Candidate spatio-temporal operations. Importing this package registers every op family."""

from hybridnas.ops.registry import create_op, is_op, list_ops, normalize_stride, register_op

__all__ = ["create_op", "is_op", "list_ops", "normalize_stride", "register_op"]
