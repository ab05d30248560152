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


def patch_roberta_config(attn_implementation="eager"):
    """Answers RobertaConfig.from_pretrained("roberta-base") offline. The golden fixtures and the
    interop checks ask for the eager attention (an additive finfo.min mask, as the reference's
    Flax model: a fully padded row attends uniformly); the benchmark passes None to measure
    what transformers picks by default (SDPA)."""
    from transformers import RobertaConfig

    def from_pretrained(cls, name, *args, **kwargs):
        if name != "roberta-base":
            raise SystemExit(f"hn_model_name_or_path {name!r}: only roberta-base is known offline")
        if attn_implementation is None:
            return cls(**ROBERTA_BASE)
        return cls(**ROBERTA_BASE, attn_implementation=attn_implementation)

    RobertaConfig.from_pretrained = classmethod(from_pretrained)


# transformers 4.x defaults of the tokenizer classes the test tokenizers name (or imply when
# tokenizer_config.json names none). transformers 5 rebuilds a class's pipeline in Python
# (e.g. LlamaTokenizer installs its own Metaspace pre-tokenizer over tokenizer.json's); the
# reference was written against 4.x, which loads tokenizer.json verbatim, so the golden
# fixtures load it verbatim too and supply the class's special-token defaults by hand.
CLASS_DEFAULTS = {
    "GPT2TokenizerFast": dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                              unk_token="<|endoftext|>"),
    "GPTNeoXTokenizerFast": dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                 unk_token="<|endoftext|>"),
    "RobertaTokenizerFast": dict(bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                 cls_token="<s>", unk_token="<unk>", pad_token="<pad>",
                                 mask_token="<mask>"),
    "BertTokenizerFast": dict(unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                              cls_token="[CLS]", mask_token="[MASK]"),
    "T5TokenizerFast": dict(eos_token="</s>", unk_token="<unk>", pad_token="<pad>"),
    "LlamaTokenizerFast": dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>"),
}
# The class transformers 4.x's AutoTokenizer picks for each tokenizer in tests/data/tokenizers
# (some name none in their tokenizer_config.json; the model they come from decides).
TEST_TOKENIZER_CLASSES = {
    "gpt2": "GPT2TokenizerFast",
    "roberta-base": "RobertaTokenizerFast",
    "t5-small": "T5TokenizerFast",
    "bert-base-uncased": "BertTokenizerFast",
    "llama2-tinyllama": "LlamaTokenizerFast",
    "mistral-7b-v0.1": "LlamaTokenizerFast",
    "gpt-neox-20b": "GPTNeoXTokenizerFast",
}
SPECIAL_ATTRIBUTES = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                      "cls_token", "mask_token"]


def load_tokenizer_verbatim(path, class_name=None):
    """A transformers tokenizer over `path`/tokenizer.json exactly as written (the generic fast
    class), with the special tokens transformers 4.x's `class_name` (default: the one
    tokenizer_config.json names) would have: its defaults, overridden by tokenizer_config.json
    and special_tokens_map.json. Returns (tokenizer, class name used for the defaults)."""
    import json as _json
    from transformers import PreTrainedTokenizerFast

    config = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        f = os.path.join(path, name)
        if os.path.isfile(f):
            with open(f, encoding="utf-8") as fh:
                data = _json.load(fh)
            for key, value in data.items():
                config.setdefault(key, value) if name == "special_tokens_map.json" else \
                    config.__setitem__(key, value)
    class_name = class_name or config.get("tokenizer_class") or \
        TEST_TOKENIZER_CLASSES.get(os.path.basename(os.path.normpath(path)))
    kwargs = dict(CLASS_DEFAULTS.get(class_name or "", {}))
    for key in SPECIAL_ATTRIBUTES:
        if key in config:
            value = config[key]
            kwargs[key] = value["content"] if isinstance(value, dict) else value
    extra = config.get("additional_special_tokens")
    if extra:
        kwargs["additional_special_tokens"] = [x["content"] if isinstance(x, dict) else x
                                               for x in extra]
    for key in ("clean_up_tokenization_spaces", "model_max_length"):
        if key in config:
            kwargs[key] = config[key]
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(path, "tokenizer.json"), **kwargs)
    return tok, class_name


def special_tokens_v4(tok):
    """all_special_tokens as transformers 4.x orders them: the attributes in their fixed order,
    then the additional special tokens, without repeats."""
    out = []
    for key in SPECIAL_ATTRIBUTES:
        value = getattr(tok, key, None)
        if value is not None and str(value) not in out:
            out.append(str(value))
    extra = getattr(tok, "additional_special_tokens", None)
    if extra is None:
        extra = getattr(tok, "extra_special_tokens", None) or []
    if isinstance(extra, dict):
        extra = list(extra.values())
    for value in extra:
        if str(value) not in out:
            out.append(str(value))
    return out
