"""Classifiers learnt from the library's own labels and tags.

- :mod:`.config`: :class:`ClassifierConfig`, the settings (light: no numerical imports)
- :mod:`.inputs`: segments of tracks and clips (mean embeddings; log-mel or CQT spectrograms)
- :mod:`.heads`: single-label softmax and multi-label sigmoid heads, training, the "unknown" rule
- :mod:`.cnn`: a CNN trained from scratch on spectrograms (shallow or deep)
- :mod:`.aggregate`: segments → one answer (raw, max, majority)
- :mod:`.store`: ``classifier.safetensors`` + ``classifier.json`` in the library folder
- :mod:`.train`: :func:`train_classifier`; :mod:`.api`: :func:`classify` → :class:`Classification`
- :mod:`.genre`: ``genre`` answers from a trained classifier when there is one, else the neighbours

Import the modules themselves (``from tuneprint.server.classify.api import classify``): this
package imports nothing, so the command line can read :mod:`.config` without torch.
"""
