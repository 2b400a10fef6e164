"""Research fixtures for studies and tests, off the pipeline's path: synthetic embeddings with identity structure
(:mod:`fiqa.studies.synthetic`) and controlled capture scenarios (:mod:`fiqa.studies.scenarios`)."""
