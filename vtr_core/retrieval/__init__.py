"""From head states to rankings: the two-stage search over an index (`search`), score matrices for
all pairs or for each query's candidates (`ranking`), exact float16 stage 1 on a GPU
(`exact_search`), and the transductive DSL / inverted-softmax revisers (`dsl`). The faiss structure
stage 1 searches on the CPU is chosen by vtr_core.index.structures."""
