"""DenseNet Explorer's Streamlit dashboard: ``streamlit run dashboard/app.py``.

``app.py`` (entrypoint: sidebar, navigation), ``views/`` (one thin script per page), ``state.py``
(every cache and all session state), ``backend.py`` (what is used from ``densenet/``),
``analysis.py`` and ``figures.py`` (pure computations and figures, testable without Streamlit).
"""
