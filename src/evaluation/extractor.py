"""The embedding extractor of a model file, as eval.py and speakers.py load it."""
import logging

from src.checkpoint import load_embedding_weights
from src.data.front_ends import front_end_of
from src.device import conv_impl, init_context
from src.evaluation.embeddings import EmbeddingExtractor
from src.inference.folding import fold_batch_norm
from src.kernels.network import apply_cpu_kernels
from src.model import build_embedding_network

logger = logging.getLogger("eval")


def load_extractor(config, distributed=False):
    """The embedding network of the config with the weights of model_path, ready to extract.

    ``distributed``: this process is one rank of a launch (see src/device.py init_context).
    """
    device = init_context(config, distributed)
    impl = conv_impl(config, device)
    network = build_embedding_network(config, impl)
    load_embedding_weights(config.model_path, network)
    folded = fold_batch_norm(network, config, impl) if config.fold_batch_norm else None
    network = apply_cpu_kernels(network if folded is None else folded, config.cpu_kernels, device,
                                config.num_threads)
    extractor = EmbeddingExtractor(network, config.in_channels, config.extraction_graphs, front_end_of(config))
    logger.info("loaded %s on %s%s, %s graphs, cpu_kernels %s, features %s", config.model_path, device,
                "" if folded is None else ", batch norm folded", extractor.graphs, config.cpu_kernels,
                config.features)
    return extractor
