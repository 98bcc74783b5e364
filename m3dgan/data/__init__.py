"""Data: the on-disk format of built data sets (store, tensors, views, frames) and the one entry
point that finds or makes a task's data set (build); ``builtin/`` holds the builders made offline
from packaged material, ``formats/`` the readers of published formats and their downloader."""
