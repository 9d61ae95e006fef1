"""An ``internvl_chat``-layout folder (what OpenGVLab publishes as InternVL2-*), built offline:
the rehearsal's builder (tasks/rehearsal_internvl.py), under the name the tests use."""
from tasks.rehearsal_internvl import write_internvl_chat as build  # noqa: F401
