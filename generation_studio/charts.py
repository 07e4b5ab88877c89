"""Charts for the usage page, drawn as inline SVG by the server (no script,
no external library). Labels are escaped; bars carry a <title> for tooltips.
Each chart is an image named by ``title`` (``role="img"``), and ``table``
gives its figures as text for those who cannot see it."""

from markupsafe import Markup, escape

# Each colour has at least 3:1 contrast with the white card behind it.
PALETTE = ("#3558e6", "#b06a00", "#7a45d8", "#1a7f99")
OUTCOME = ("#1f7a50", "#c2352b")  # succeeded, failed


def _svg(width: int, height: int, title: str) -> str:
    return (f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">')


def bars(items, unit="", width=640, label_width=190, height_per_bar=26, colours=None,
         title="Bar chart"):
    """Horizontal bars: ``items`` is a list of (label, value) or (label, [values])."""
    rows = [(label, value if isinstance(value, (list, tuple)) else [value]) for label, value in items]
    top = max((max(values) for _, values in rows if values), default=0) or 1
    bar_area = width - label_width - 120
    height = max(1, len(rows)) * height_per_bar + 8
    parts = [_svg(width, height, title)]
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


def columns(items, width=640, height=180, title="Column chart"):
    """Vertical columns for a series over time: (label, value) pairs."""
    top = max((v for _, v in items), default=0) or 1
    n = max(1, len(items))
    step = (width - 40) / n
    parts = [_svg(width, height + 30, title)]
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


def table(headers, rows, unit=""):
    """The figures of a chart as an HTML table: ``rows`` of (label, value or [values])."""
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in headers)
    body = []
    for label, values in rows:
        values = values if isinstance(values, (list, tuple)) else [values]
        cells = "".join(f"<td>{v:,.0f}{escape(unit)}</td>" for v in values)
        body.append(f'<tr><th scope="row">{escape(label)}</th>{cells}</tr>')
    return Markup(f'<table class="figures"><thead><tr>{head}</tr></thead>'
                  f'<tbody>{"".join(body)}</tbody></table>')
