"""What every script that runs the reference needs on the GPU machine (no hub, no internet).

The reference reads roberta-base's configuration from the hub and its zett/utils.py imports
JAX/Flax/optax at module level for training code that is not used here. `patch_roberta_config`
answers `RobertaConfig.from_pretrained("roberta-base")` offline with roberta-base's settings;
`import_reference` imports the reference modules, putting stand-ins in place of missing
training-only imports. The reference itself is never committed: it is read from the git-ignored
checkout passed as --ref.
"""
import os
import sys
import types

# The roberta-base configuration (the reference reads it from the hub).
ROBERTA_BASE = dict(
    vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
    intermediate_size=3072, hidden_act="gelu", hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1, max_position_embeddings=514, type_vocab_size=1,
    initializer_range=0.02, layer_norm_eps=1e-05, pad_token_id=1, bos_token_id=0,
    eos_token_id=2,
)


def import_reference(ref):
    """Imports the reference modules that are needed. The reference's zett/utils.py imports
    JAX/Flax/optax at module level for training code that is not used here; where one of them
    is missing, or jax.sharding lacks the long-removed PositionalSharding, a stand-in module is
    installed so that the import succeeds. Returns (modules, list of stand-ins used)."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    sys.path.insert(0, os.path.abspath(ref))
    standins = []

    class _AnyMeta(type):
        def __getattr__(cls, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return _Any

    class _Any(metaclass=_AnyMeta):
        def __init__(self, *args, **kwargs):
            pass

        def __call__(self, *args, **kwargs):
            return _Any()

        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return _Any()

    class _StubModule(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return _Any

    def stub(name):
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            full = ".".join(parts[:i])
            if full not in sys.modules:
                sys.modules[full] = _StubModule(full)
                if i > 1:
                    setattr(sys.modules[".".join(parts[:i - 1])], parts[i - 1], sys.modules[full])

    try:
        import jax.sharding
        if not hasattr(jax.sharding, "PositionalSharding"):
            jax.sharding.PositionalSharding = _Any
            standins.append("jax.sharding.PositionalSharding")
    except ImportError:
        for name in ("jax", "jax.numpy", "jax.sharding"):
            stub(name)
        standins.append("jax")
    for name, subs in (("flax", ("flax.linen", "flax.traverse_util", "flax.serialization")),
                       ("optax", ()), ("pandas", ())):
        try:
            __import__(name)
            for sub in subs:
                __import__(sub)
        except ImportError:
            for sub in (name,) + subs:
                stub(sub)
            standins.append(name)

    import zett.utils as zutils
    import zett.tokenizer_converters as zconv
    from hf_hypernet.configuration_hypernet import ZettHypernetConfig
    from hf_hypernet.modeling_hypernet import ZettHypernet

    return types.SimpleNamespace(utils=zutils, converters=zconv, Config=ZettHypernetConfig,
                                 Hypernet=ZettHypernet), standins


def patch_roberta_config():
    from transformers import RobertaConfig

    def from_pretrained(cls, name, *args, **kwargs):
        if name != "roberta-base":
            raise SystemExit(f"hn_model_name_or_path {name!r}: only roberta-base is known offline")
        return cls(**ROBERTA_BASE)

    RobertaConfig.from_pretrained = classmethod(from_pretrained)
