# The RunEngine, with metadata (sample, project, operator...) that persists between sessions, set up
# the way NSLS-II profiles are: nslsii.configure_base (BestEffortCallback, progress bars, bluesky
# magics, logging) where nslsii is installed; the same pieces by hand where it is not.
from bluesky import RunEngine
from bluesky.utils import PersistentDict

RE = RunEngine({})
MD_DIR.mkdir(parents=True, exist_ok=True)
RE.md = PersistentDict(str(MD_DIR))

try:
    import nslsii
except ImportError:
    nslsii = None

if nslsii is not None and USE_NSLSII:
    # uses the RE above; no databroker here (the local catalog in 20-catalog.py stores runs)
    nslsii.configure_base(
        get_ipython().user_ns,  # noqa: F821 - IPython's startup namespace
        None,
        mpl=False,
        epics_context=False,
        ipython_logging=False,
        publish_documents_with_kafka=False,
    )
else:
    from bluesky import SupplementalData
    from bluesky.callbacks.best_effort import BestEffortCallback
    from bluesky.utils import ProgressBarManager

    bec = BestEffortCallback()
    bec.disable_plots()
    peaks = bec.peaks
    RE.subscribe(bec)
    sd = SupplementalData()
    RE.preprocessors.append(sd)
    RE.waiting_hook = ProgressBarManager()
    try:
        from bluesky.magics import BlueskyMagics

        get_ipython().register_magics(BlueskyMagics)  # noqa: F821
    except ImportError:
        pass
