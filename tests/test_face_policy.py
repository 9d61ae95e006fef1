"""The default face policy rejects face-dominated images and keeps people in a scene."""
import skimage.data
from PIL import Image

from djepa_t2i.config import load_config
from tasks.stages import build_stage


def _face_crop(im, box, k):
    x1, y1, x2, y2 = box
    cx, cy, h = (x1 + x2) / 2, (y1 + y2) / 2, k * (x2 - x1) / 2
    return im.crop((int(cx - h), int(cy - h), int(cx + h), int(cy + h))).resize((256, 256))


def test_default_policy_rejects_close_ups_only():
    f = build_stage("face", load_config())
    astro, coffee = Image.fromarray(skimage.data.astronaut()), Image.fromarray(skimage.data.coffee())
    a, c = f([astro, coffee])
    assert a.passed and a.details["n_faces"] == 1 and 0.02 < a.score < 0.05  # a person in a scene
    assert c.passed and c.details["n_faces"] == 0 and c.score == 0.0
    close, wider = f([_face_crop(astro, a.details["boxes"][0], 2), _face_crop(astro, a.details["boxes"][0], 3)])
    assert not close.passed and close.score > 0.2
    assert close.reason == f"largest face covers {close.score:.3f} > max_face_area 0.2 (haar)"
    assert wider.passed and 0.05 < wider.score < 0.2


def test_policy_is_configurable():
    astro = Image.fromarray(skimage.data.astronaut())
    no_faces = build_stage("face", load_config(overrides=["curate.face.max_faces=0"]))([astro])[0]
    assert not no_faces.passed and no_faces.reason == "1 faces > max_faces 0 (haar)"
    strict = build_stage("face", load_config(overrides=["curate.face.max_face_area=0.01"]))([astro])[0]
    assert not strict.passed and "> max_face_area 0.01" in strict.reason
