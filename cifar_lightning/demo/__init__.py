"""The demo page (``cifar-lightning demo``, Gradio): classify an upload or an example, with its Grad-CAM overlay."""
