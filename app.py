"""The demo as a Hugging Face Space: the Space runs `python app.py` on this repository (docs/explain.md).

CKPT names the checkpoint (default: the fast recipe's committed one); DATA_DIR, a decoded
CIFAR-10 for the misclassified tab. Locally: `cifar-lightning demo --ckpt_path ...` does the same.
"""

import os

from cifar_lightning.demo.app import build_demo

demo = build_demo(os.environ.get("CKPT", "results/fast/last.ckpt"), os.environ.get("DATA_DIR"))

if __name__ == "__main__":
    demo.launch(ssr_mode=False)  # a Space sets the address and port (GRADIO_SERVER_NAME, GRADIO_SERVER_PORT)
