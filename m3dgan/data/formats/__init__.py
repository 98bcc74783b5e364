"""Readers of published data set formats (pix2pix aligned pairs, CUB, COCO captions, WMT,
LJSpeech, LibriSpeech) that convert them into the store format, and ``fetch``, their downloader."""
