"""Turn-span datasets: the corpus builders (`corpora`), the on-disk dataset (`dataset`), multi-voice
renders of real turns (`render`), `vad-turn build-data` (`build`) and pause statistics (`explore`)."""
