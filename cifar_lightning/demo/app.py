"""A demo page of a checkpoint: upload an image or pick an example, see the top classes and the Grad-CAM overlay.

It fetches nothing from outside and works offline; a bad upload gets one line in the page."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from PIL import Image

EXAMPLES = Path(__file__).resolve().parent / "examples"  # one test image of each class (CIFAR-10's test split)
MIN_SIDE = 8  # pixels: below this an image holds nothing to classify
SHOWN_SIZE = 256  # pixels a side of the overlay on the page (the network sees 32)
MISCLASSIFIED_SHOWN = 24


def example_files() -> list[Path]:
    return sorted(EXAMPLES.glob("*.jpg"))


def read_upload(path: str | None) -> tuple[Image.Image | None, str]:
    """The uploaded image through the one image reader (its bounds, EXIF, any decoder failure), or None and why not."""
    from cifar_lightning.data.images import read_image
    from cifar_lightning.errors import DataError

    if not path:
        return None, "No image: upload one, or pick one of the examples."
    try:
        image = read_image(path, "upload")
    except DataError as err:
        return None, f"{err} (upload a PNG or JPEG)"
    if min(image.size) < MIN_SIDE:
        return (
            None,
            f"The image is {image.width}x{image.height} pixels: too small to classify. Give one at least {MIN_SIDE} a side.",
        )
    return image, ""


class Demo:
    """What the page calls: a loaded checkpoint, its answers and overlays."""

    def __init__(
        self, ckpt_path: str | Path, cache_dir: str | Path | None = None, trusted: list[str] | None = None
    ) -> None:
        from cifar_lightning.explain.cam import conv_layers, default_layer
        from cifar_lightning.inference.classifier import load

        self.model = load(ckpt_path, trusted=trusted)  # the safe loader: the checkpoint is data
        self.ckpt_path = str(ckpt_path)
        self.layers = conv_layers(self.model.network)
        self.default_layer = default_layer(self.model.network)
        self.cache_dir = Path(cache_dir) if cache_dir else None

    def overlay(self, images: list[Image.Image], layer: str, opacity: float, classes=None) -> list[np.ndarray]:
        from cifar_lightning.explain.cam import overlay

        maps = self.model.activation_maps(images, layer=layer, classes=classes)
        pixels = (self.model.to_tensor(images).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        shown = overlay(pixels, maps, opacity)
        return [
            np.asarray(Image.fromarray(s).resize((SHOWN_SIZE, SHOWN_SIZE), Image.Resampling.NEAREST)) for s in shown
        ]

    def answer(self, path: str | None, top_k: float, layer: str | None, opacity: float):
        """(top classes for gr.Label, overlay, message) for one upload; a bad one gets only the message."""
        image, problem = read_upload(path)
        if image is None:
            return None, None, problem
        try:
            k = int(min(max(top_k or 1, 1), len(self.model.class_names)))
            (prediction,) = self.model.predict([image])
            top = dict(sorted(prediction.probabilities.items(), key=lambda item: -item[1])[:k])
            (shown,) = self.overlay([image], layer or self.default_layer, float(opacity))
            return (
                top,
                shown,
                f"{prediction.label} ({prediction.probability:.1%}, test-time views: {prediction.tta}); "
                f"Grad-CAM of {layer or self.default_layer}",
            )
        except Exception as err:  # noqa: BLE001 - the page says what failed and keeps serving
            return (
                None,
                None,
                f"This image could not be classified ({type(err).__name__}: {' '.join(str(err).split())[:200]}).",
            )

    def misclassified(self, layer: str | None, opacity: float):
        """(gallery items, message): the first misclassified test images with their overlays, when the test split is at hand."""
        from cifar_lightning.data import sources

        cache_dir = self.cache_dir or sources.default_cache_dir()
        arrays = sources.cache_of_classes(cache_dir, self.model.class_names, self.model.input_size[0])
        if arrays is None:
            return [], (
                f"The test split is not at hand in {cache_dir}: start the demo with --cache_dir DIR, the folder a fit "
                "decoded this checkpoint's data into (data.cache_dir), to see its misclassified test images."
            )
        wrong: list[tuple[np.ndarray, int, int]] = []
        for start in range(0, len(arrays.test_images), 500):
            batch = list(arrays.test_images[start : start + 500])
            predicted = [self.model.class_names.index(p.label) for p in self.model.predict(batch)]
            wrong += [
                (image, int(t), p)
                for image, t, p in zip(batch, arrays.test_labels[start : start + 500], predicted)
                if t != p
            ]
            if len(wrong) >= MISCLASSIFIED_SHOWN:
                break
        wrong = wrong[:MISCLASSIFIED_SHOWN]
        if not wrong:
            return [], "No misclassified test image."
        images = [Image.fromarray(image) for image, _, _ in wrong]
        shown = self.overlay(images, layer or self.default_layer, float(opacity), classes=[p for _, _, p in wrong])
        names = self.model.class_names
        return (
            [(s, f"{names[t]} → {names[p]}") for s, (_, t, p) in zip(shown, wrong)],
            f"The first {len(wrong)} misclassified test images (true → predicted), under the map of the class taken.",
        )


def build_demo(ckpt_path: str | Path, cache_dir: str | Path | None = None, trusted: list[str] | None = None):
    """The page as a ``gradio.Blocks``, not launched."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no usage report, no version check
    import gradio as gr

    demo = Demo(ckpt_path, cache_dir, trusted)
    with gr.Blocks(title="cifar_lightning demo", analytics_enabled=False) as page:
        gr.Markdown(
            f"# cifar_lightning\nCheckpoint `{demo.ckpt_path}`: a classifier of {len(demo.model.class_names)} classes ({', '.join(demo.model.class_names)})."
        )
        with gr.Row():
            top_k = gr.Slider(1, len(demo.model.class_names), value=3, step=1, label="classes shown (top k)")
            layer = gr.Dropdown(demo.layers, value=demo.default_layer, label="Grad-CAM layer")
            opacity = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="overlay opacity")
        with gr.Tab("Classify"):
            with gr.Row():
                upload = gr.File(
                    label="an image (PNG, JPEG...)", file_types=["image"], type="filepath", elem_id="upload"
                )
                classes = gr.Label(label="top classes", elem_id="classes")
                shown = gr.Image(label="what the network looked at (Grad-CAM)", type="numpy", elem_id="overlay")
            message = gr.Markdown(elem_id="message")
            gr.Examples([[str(p)] for p in example_files()], inputs=[upload], label="or pick a test image")
            inputs, outputs = [upload, top_k, layer, opacity], [classes, shown, message]
            for control in (upload, top_k, layer, opacity):
                control.change(demo.answer, inputs, outputs)
        with gr.Tab("Misclassified test images"):
            show = gr.Button("show them")
            gallery = gr.Gallery(label="true → predicted", columns=6)
            note = gr.Markdown(elem_id="misclassified-note")
            show.click(demo.misclassified, [layer, opacity], [gallery, note])
    return page


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cifar-lightning demo", description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", required=True, help="a checkpoint this project wrote (results/fast/last.ckpt)")
    parser.add_argument(
        "--cache_dir",
        help="where a fit decoded the checkpoint's data (data.cache_dir; default the default cache folder): the "
        "misclassified tab reads its test split",
    )
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--host", default="127.0.0.1", help="the address to serve on (default: this machine only)")
    parser.add_argument(
        "--trusted", action="append", default=None, help="a class the checkpoint may name besides the project's own"
    )
    args = parser.parse_args(argv)
    from cifar_lightning.errors import require, user_errors

    with user_errors(False, "cifar-lightning demo"):
        require("cifar-lightning demo", ("gradio",), "demo")
        page = build_demo(args.ckpt_path, args.cache_dir, args.trusted)
    page.launch(server_name=args.host, server_port=args.port, share=False, ssr_mode=False, show_error=False)


if __name__ == "__main__":
    main()
