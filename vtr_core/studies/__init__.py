"""Studies that measure the library rather than run it, kept apart from the runtime packages (as
open_clip keeps its training code apart): benchmarks and docs/PERFORMANCE.md (`bench`), the
offline backbone's accuracy study and docs/ACCURACY.md (`accuracy`), and the results table
(`report`)."""
