"""Does an encoding use the context past its training length L, or only survive it?

- repeat.py: loss on a repeated span's second copy vs its first, by the distance between them;
  the distance at which the gain disappears is the encoding's usable context;
- retrieval.py: a key sentence placed at a depth of filler text, recalled by a query at the end;
- attention.py: mean attention distance and attention mass past L, per layer and head;
- run.py: all of them on every inference-time variant; report.py, plots.py: the report section.
"""
