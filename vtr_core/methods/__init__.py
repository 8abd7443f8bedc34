"""Retrieval heads over backbone features (meanp now; s3ma, eercf, camoe share its interface)."""
