"""BLIP preprocessing (spec 5.4): bert-base-uncased WordPiece + [DEC]/[ENC], 224 px transforms.

The tokenizer is built from a WordPiece vocabulary: an explicit `vocab.txt`, or
`bert-base-uncased` from the Hugging Face cache. `[DEC]` (bos) then `[ENC]` are added and
must get ids 30522 and 30523 (the released text embeddings have 30524 rows); every text
is padded to `max_length` = 100 as upstream. Images: eval = Resize((224, 224)) bicubic,
no crop; train = RandomResizedCrop(224, scale 0.5-1) + flip + RandomAugment(2, 5).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from uniir_cli.errors import ModelError
from uniir_cli.models.base import EncoderBatch, Processor, has_content

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
BERT_REPO = "google-bert/bert-base-uncased"
DEC_ID, ENC_ID = 30522, 30523


TINY_VOCAB = "tiny"
# Common English words (incl. colours, shapes, places) for the generated tiny vocabulary.
_COMMON_WORDS = """
a an the this that these those it its is are was be of on in at to for from with by and or not no what which who
where when how find retrieve search look up show shows shown showing match matches matching describe describes
described description caption text image images photo photos picture pictures page pages article passage news
product item scene same similar different like change changed changing make it's here below above there one two
three small large big tiny huge left right middle centre center top bottom front behind background foreground
red green blue yellow purple orange pink brown black white grey gray cyan sepia dark light colour color shape
circle square triangle star diamond cross heart line dot shapes colours colors size position wiki web answer
question questions entity name named called has have having with without into onto over under near far
fashion dress shirt everyday common photograph press archive document documents visual pictured pictures
"""


def tiny_vocab() -> list[str]:
    """A generated WordPiece vocabulary (`vocab = "tiny"`): characters (and ## pieces) plus
    ~200 common words, so tiny models and tests run offline without bert-base-uncased;
    not for the released sizes."""
    import string

    chars = string.ascii_lowercase + string.digits + string.punctuation
    words = list(dict.fromkeys(w for w in _COMMON_WORDS.split() if len(w) > 1))
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars), *words]


def find_vocab(vocab: str) -> str:
    """A WordPiece `vocab.txt`: the given path, else bert-base-uncased from the HF cache."""
    if vocab == TINY_VOCAB:
        return vocab
    if vocab:
        if not Path(vocab).is_file():
            raise ModelError(f"model.options.vocab = {vocab!r}: no such file; pass bert-base-uncased's vocab.txt")
        return vocab
    try:
        from huggingface_hub import hf_hub_download

        for repo in (BERT_REPO, "bert-base-uncased"):
            try:
                return hf_hub_download(repo, "vocab.txt")
            except Exception as exc:  # noqa: BLE001 - try the legacy repo id, then fail below
                log.debug("vocab.txt of %s unavailable: %s", repo, exc)
    except ImportError:
        pass
    raise ModelError(
        "the BLIP tokenizer needs bert-base-uncased's vocab.txt, which is not in the Hugging Face cache and "
        f"could not be downloaded; on a machine with internet run `hf download {BERT_REPO} vocab.txt`, "
        "or pass --set 'model.options.vocab=\"/path/vocab.txt\"'"
    )


def build_tokenizer(vocab_path: str, expect_ids: bool = True) -> Any:
    """BertTokenizer (uncased) + [DEC] bos + [ENC]; asserts they follow the vocabulary and,
    for the released sizes (`expect_ids`), get ids 30522/30523."""
    from transformers import BertTokenizer

    tokens = tiny_vocab() if vocab_path == TINY_VOCAB else Path(vocab_path).read_text(encoding="utf-8").splitlines()
    vocab: dict[str, int] = {}
    for token in tokens:
        token = token.rstrip("\n")
        if token and token not in vocab:
            vocab[token] = len(vocab)
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True)  # transformers 5: `vocab=`, not vocab_file
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    dec, enc = tokenizer.convert_tokens_to_ids("[DEC]"), tokenizer.convert_tokens_to_ids("[ENC]")
    want = (DEC_ID, ENC_ID) if expect_ids else (len(vocab), len(vocab) + 1)
    if (dec, enc) != want:
        raise ModelError(
            f"{vocab_path}: [DEC]/[ENC] got ids {dec}/{enc}, expected {want[0]}/{want[1]}; "
            "use bert-base-uncased's 30522-token vocab.txt"
        )
    return tokenizer


class BlipProcessor(Processor):
    """Always both modalities (a missing text is "", a missing image zeros), as upstream;
    the `has_*` flags carry the masks BLIP-SF needs. `train` picks the augmenting transform."""

    def __init__(self, image_size: int = 224, max_length: int = 100, vocab: str = "", expect_ids: bool = True, train: bool = False) -> None:
        self.image_size = image_size
        self.max_length = max_length
        self.vocab = vocab
        self.expect_ids = expect_ids
        self.train = train
        self._tokenizer: Any = None
        self._transforms: dict[bool, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_tokenizer": None, "_transforms": {}}

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = build_tokenizer(find_vocab(self.vocab), self.expect_ids)
        return self._tokenizer

    def transform(self, train: bool) -> Any:
        if train not in self._transforms:
            from torchvision import transforms as T

            from uniir_cli.models.blip.augment import RandomAugment

            bicubic = T.InterpolationMode.BICUBIC
            tail = [T.ToTensor(), T.Normalize(CLIP_MEAN, CLIP_STD)]
            if train:
                ops: list[Any] = [
                    T.RandomResizedCrop(self.image_size, scale=(0.5, 1.0), interpolation=bicubic),
                    T.RandomHorizontalFlip(), RandomAugment(2, 5),
                ]
            else:
                ops = [T.Resize((self.image_size, self.image_size), interpolation=bicubic)]
            self._transforms[train] = T.Compose([lambda im: im.convert("RGB"), *ops, *tail])
        return self._transforms[train]

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt")
        return out["input_ids"], out["attention_mask"]

    def process(self, text: str | None, image: Image.Image | None, query: Any = None) -> dict[str, Any]:
        has_text, has_image = has_content(text, image)
        ids, mask = self.tokenize([text if has_text else ""])
        pixels = self.transform(self.train)(image) if has_image else torch.zeros(3, self.image_size, self.image_size)
        return {"has_text": has_text, "has_image": has_image, "input_ids": ids[0], "attention_mask": mask[0], "pixel_values": pixels}

    def collate(self, items: Sequence[dict[str, Any]]) -> EncoderBatch:
        has_text = torch.tensor([bool(it["has_text"]) for it in items], dtype=torch.bool)
        has_image = torch.tensor([bool(it["has_image"]) for it in items], dtype=torch.bool)
        tensors = {key: torch.stack([it[key] for it in items]) for key in ("input_ids", "attention_mask", "pixel_values")}
        return EncoderBatch(has_text, has_image, tensors)
