"""DenseNet Explorer's Streamlit dashboard: ``streamlit run dashboard/app.py``.

By job: ``app.py`` (entrypoint: sidebar, navigation), ``views/`` (one thin script per page, layout
only), ``page.py`` (how a page starts), ``runtime.py`` (device, threads, jobs on the compute gate),
``gate.py`` (the fair gate itself, no Streamlit), ``session.py`` (memo and controls that keep their
value), ``navigation.py`` (typed requests one page hands another), ``sources.py`` (model sources
and loading), ``inputs.py`` (samples and uploads), ``results.py`` (typed results: the trace, maps,
trust checks), ``shared.py`` (figures and topologies shared by all sessions), ``audits/`` (background
audit runs, by job), ``analysis.py`` and ``figures.py`` (pure computations and figures, testable
without Streamlit), ``selection.py`` (what a click on a figure picked), ``numbers.py`` (counts and
sizes for people).
"""
