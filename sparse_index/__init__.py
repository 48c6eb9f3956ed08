"""spidx serving side: inverted index over sparse item embeddings, exact retrieval, segments.

Imports without torch.
"""
from .embeddings import Embeddings, load_embeddings, save_embeddings
from .errors import InputError
from .interactions import Interactions, read_interactions

__all__ = ["Embeddings", "InputError", "Interactions", "load_embeddings", "read_interactions", "save_embeddings"]
