"""Length-extrapolation evaluation (evaluate.py) and the encoding ablation report (compare.py).

- windows.py: which windows each protocol runs and which tokens it scores (index arithmetic);
- text.py: evaluation text tokenized like the training data, cut into documents;
- perplexity.py: windows through a model -> summed cross-entropy (and per position);
- extrapolation.py: one model at every length, protocol, set and variant (context extension);
- samples.py, runs.py, plots.py, report.py: the report; ablation.py: compare.py's steps.
"""
