"""Charts for the usage page, drawn as inline SVG by the server (no script,
no external library). Labels are escaped; bars carry a <title> for tooltips."""

from markupsafe import Markup, escape

PALETTE = ("#4f7cff", "#f0a63a", "#9b6cf0", "#30a9c8")
OUTCOME = ("#3fb37f", "#e0645c")  # succeeded, failed


def bars(items, unit="", width=640, label_width=190, height_per_bar=26, colours=None):
    """Horizontal bars: ``items`` is a list of (label, value) or (label, [values])."""
    rows = [(label, value if isinstance(value, (list, tuple)) else [value]) for label, value in items]
    top = max((max(values) for _, values in rows if values), default=0) or 1
    bar_area = width - label_width - 120
    height = max(1, len(rows)) * height_per_bar + 8
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
             f'xmlns="http://www.w3.org/2000/svg">']
    for i, (label, values) in enumerate(rows):
        y = 4 + i * height_per_bar
        parts.append(f'<text x="{label_width - 8}" y="{y + 15}" text-anchor="end">'
                     f'{escape(label)}</text>')
        slot = (height_per_bar - 6) / len(values)
        for j, value in enumerate(values):
            w = max(1.0, bar_area * (value or 0) / top)
            colour = (colours or PALETTE)[j % len(colours or PALETTE)]
            parts.append(f'<rect x="{label_width}" y="{y + j * slot:.1f}" width="{w:.1f}" '
                         f'height="{slot - 1:.1f}" fill="{colour}" rx="2"><title>'
                         f'{escape(label)}: {value:,.0f}{escape(unit)}</title></rect>')
        text = " / ".join(f"{v:,.0f}" for v in values)
        parts.append(f'<text x="{label_width + bar_area + 6}" y="{y + 15}">{text}{escape(unit)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def columns(items, width=640, height=180):
    """Vertical columns for a series over time: (label, value) pairs."""
    top = max((v for _, v in items), default=0) or 1
    n = max(1, len(items))
    step = (width - 40) / n
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height + 30}" role="img" '
             f'xmlns="http://www.w3.org/2000/svg">']
    for i, (label, value) in enumerate(items):
        h = (height - 10) * value / top
        x = 30 + i * step
        parts.append(f'<rect x="{x:.1f}" y="{height - h:.1f}" width="{max(1, step - 2):.1f}" '
                     f'height="{h:.1f}" fill="{PALETTE[0]}"><title>{escape(label)}: {value}'
                     f'</title></rect>')
        if i % max(1, n // 6) == 0:
            parts.append(f'<text x="{x:.1f}" y="{height + 16}">{escape(label[5:])}</text>')
    parts.append(f'<text x="0" y="12">{top}</text></svg>')
    return Markup("".join(parts))
