"""How sure a plane calibration is, in words (`loralpha.studies.calibrate_method` decides; this says it): the
one-line summary of its certainty, and what was carried to the target, in words that agree with it."""

from __future__ import annotations

from typing import Any

AXES = (("x", "η_A"), ("y", "γ·η_B"))


def summary_line(certainty: dict[str, Any]) -> str:
    """How sure, in one line: per axis bracketed or a bound, the flat width and the horizon's moves (carried or not,
    and why); the map's edge; `unknown` first when neither axis was bracketed."""
    parts = []
    if certainty["unknown"]:
        parts.append("unknown: the optimum was bracketed along neither axis (the best probe lies at the lattice's "
                     "corner or the check's end); give xs= and ys= beyond it or a larger budget")
    for axis, name in AXES:
        c = certainty[axis]
        if not certainty["checked"]:
            where = "bracketed by the map" if c["bracketed"] else "a bound (the map's edge)"
            parts.append(f"{name}: {where}; no check at a longer horizon (budget too small), not carried")
            continue
        width = "not convex at the check" if c["flat_decades"] is None else f"flat over {c['flat_decades']:.2f} decades"
        where = "bracketed" if c["bracketed"] else "not bracketed (a bound)"
        if c["measured"]:
            carried = f"carried {c['carried_decades']:+.2f} more"
        elif not c["bracketed"]:
            carried = "not carried (never bracketed)"
        else:
            carried = "not carried (a probed point, not a fitted one)"
        parts.append(f"{name}: {where}, {width}; horizon moved it {c['moved_decades']:+.2f} decades, {carried}")
    if certainty.get("walked"):
        parts.append(f"the check walked {certainty['walked']} point(s) beyond its plus, downhill")
    if certainty["edge"]:
        widened = f" after widening it by {certainty['widened']} points" if certainty["widened"] else ""
        parts.append(f"the map's best point is on its edge along {' and '.join(certainty['edge'])}{widened}")
    return "; ".join(parts)


def carry_words(cal: dict[str, Any]) -> str:
    """What was carried to the target, per axis, in words that agree with `summary_line` (same fields)."""
    h, cert = cal["horizons"], cal["certainty"]
    if not cert.get("checked", True):  # a calibration from before the plan could drop its check always had one
        return f"with no check at a longer horizon, the map's optimum is the answer, not carried to {h['target']} steps"
    said = [f"{name} carried {cert[axis]['carried_decades']:+.2f} decades" if cert[axis]["measured"] else
            f"{name} not carried" for axis, name in AXES]
    return f"to {h['target']} steps along the line through the two optima: {', '.join(said)}"
