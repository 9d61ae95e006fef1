"""Evaluators: GenEval's rules over detections, the shapes-world scorer, GenEval proper, CLIPScore."""
