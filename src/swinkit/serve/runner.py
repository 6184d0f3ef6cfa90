"""The model side of the server: batched prediction, attention maps and their pictures.

Every use of the model (the batched forward passes and the attention maps, whose hooks
would otherwise see another request's batch) runs on one model thread, one job at a time,
so the event loop stays free to accept and decode other requests meanwhile. The
attention pictures are drawn by matplotlib on a second thread, so a slow drawing does not
hold up predictions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import io
from collections.abc import Awaitable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch

from swinkit import viz
from swinkit.classifier import Classifier
from swinkit.precision import check_precision
from swinkit.serve.batching import Batcher
from swinkit.viz.figure import DEFAULT_DPI


@dataclasses.dataclass(frozen=True)
class Label:
    """One of the top classes of a prediction: its index in the head, its name, its probability."""

    index: int
    label: str
    probability: float

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields."""
        return dataclasses.asdict(self)


class ModelRunner:
    """Runs ``classifier`` for the server: batched top-k prediction, attention maps, attention pictures.

    ``precision`` is the one the classifier was loaded at (see
    :func:`swinkit.classifier.load_classifier`); it sets the dtype inputs are cast to. Prediction goes
    through a :class:`~swinkit.serve.batching.Batcher` with ``max_batch``, ``max_wait_ms``
    and ``max_queue``. Call :meth:`close` when done to stop the threads.
    """

    def __init__(
        self,
        classifier: Classifier,
        precision: str = "fp32",
        max_batch: int = 8,
        max_wait_ms: float = 5.0,
        max_queue: int = 256,
    ) -> None:
        check_precision(precision)
        self.classifier = classifier
        self.precision = precision
        self.input_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        self.transform = classifier.transform
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="swinkit-model")
        self._draw_thread = ThreadPoolExecutor(1, thread_name_prefix="swinkit-draw")
        self.batcher: Batcher[torch.Tensor, torch.Tensor] = Batcher(self._run_batch, max_batch, max_wait_ms, max_queue)

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(B, classes)`` (float32, on the CPU) of preprocessed ``images`` ``(B, C, H, W)``."""
        classifier = self.classifier
        logits = classifier.model(images.to(classifier.device, self.input_dtype))
        return logits.float().softmax(-1).cpu()

    async def _run_batch(self, items: list[torch.Tensor]) -> list[torch.Tensor]:
        loop = asyncio.get_running_loop()
        probabilities = await loop.run_in_executor(self._model_thread, self.probabilities, torch.stack(items))
        return list(probabilities)

    async def predict(self, pixels: torch.Tensor | Awaitable[torch.Tensor], topk: int = 5) -> list[Label]:
        """The ``topk`` most probable classes (capped at the class count) of one preprocessed image ``(C, H, W)``.

        ``pixels`` may be an awaitable giving the image (its request being read and decoded):
        a batch forming meanwhile then waits for it, within ``max_wait_ms``.
        """
        if topk < 1:
            if inspect.iscoroutine(pixels):
                pixels.close()
            raise ValueError(f"topk must be at least 1, got {topk}")
        row = await self.batcher.submit(pixels)
        top = row.topk(min(topk, row.numel()))
        names = self.classifier.classes
        return [Label(i, names[i], p) for i, p in zip(top.indices.tolist(), top.values.tolist())]

    async def attention(
        self, pixels: torch.Tensor, query: tuple[int, int] | None, blocks: Sequence[tuple[int, int]]
    ) -> list[viz.BlockAttention]:
        """:func:`swinkit.viz.attention_maps` of one preprocessed image, run on the model thread."""
        model = self.classifier.model
        image = pixels.to(self.input_dtype)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._model_thread, viz.attention_maps, model, image, query, blocks)

    async def attention_png(
        self, pixels: torch.Tensor, maps: Sequence[viz.BlockAttention], head: int | None, max_heads: int
    ) -> bytes:
        """The picture ``swinkit show attention`` draws for ``maps`` over ``pixels``, as PNG bytes."""
        image = viz.denormalize(pixels, self.classifier.preprocessing)

        def draw() -> bytes:
            figure = viz.draw_attention(image, maps, head, max_heads)
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=DEFAULT_DPI)
            return buffer.getvalue()

        return await asyncio.get_running_loop().run_in_executor(self._draw_thread, draw)

    async def close(self) -> None:
        """Stop batching and let the threads finish their current job."""
        await self.batcher.close()
        self._model_thread.shutdown(wait=False, cancel_futures=True)
        self._draw_thread.shutdown(wait=False, cancel_futures=True)
