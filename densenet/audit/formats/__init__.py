"""The files the field publishes, read as published: label tables, boxes and masks, with their vocabularies.

- :mod:`.tables`: CSV files as shipped (plain, ``.gz``, a one-member ``.zip``).
- :mod:`.names`: a file's image key (a path, a prefixed path, a bare id) to a listed image.
- :mod:`.vocabulary`: a dataset's label names to the model's class names (synonyms, ``--classes-map``).
- :mod:`.labels`: NIH ``Finding Labels``, CheXpert/MIMIC columns (1 / 0 / -1 / blank), one label column.
- :mod:`.masks`: masks held in memory (COCO RLE, polygons, SIIM run-lengths, reader votes), decoded on demand.
- :mod:`.truth`: boxes (NIH, RSNA, VinDr-CXR, plain) and masks (PNG folder, COCO RLE JSON,
  polygon JSON, SIIM CSV), recognised from the header or keys.
"""
