"""The long-video moment retrieval benchmark: clips of a split joined into long videos with exact
ground truth (`build`), TVR's video corpus moment retrieval metrics (`metrics`), the run that
indexes the benchmark per moment policy and scores every method against its clip-level ceiling
(`evaluate`), and its markdown (`tables`). Submodules are imported by name.
"""
