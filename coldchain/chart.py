"""The temperature chart of a shipment: readings per logger, the profile's band, the
excursions shaded. SVG drawn by hand (no plotting library); PNG drawn with Pillow."""

from __future__ import annotations

import datetime
import io
from dataclasses import dataclass
from decimal import Decimal
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 900, 360
LEFT, RIGHT, TOP, BOTTOM = 60, 20, 30, 40
COLOURS = ["#1f5fa8", "#7a3ea1", "#2b8a3e", "#b35c00"]
EXCURSION_FILL = "#d9480f"


@dataclass
class ChartData:
    title: str
    series: dict[str, list[tuple[datetime.datetime, Decimal]]]
    band: tuple[Decimal, Decimal] | None  # (min °C, max °C)
    excursions: list[tuple[str, datetime.datetime, datetime.datetime]]  # number, start, end


class _Scale:
    def __init__(self, data: ChartData):
        times = [at for points in data.series.values() for at, _ in points]
        values = [float(c) for points in data.series.values() for _, c in points]
        if data.band:
            values += [float(data.band[0]), float(data.band[1])]
        self.t0 = min(times) if times else datetime.datetime.now(datetime.UTC)
        self.t1 = max(times) if times else self.t0 + datetime.timedelta(hours=1)
        if self.t1 <= self.t0:
            self.t1 = self.t0 + datetime.timedelta(minutes=1)
        low, high = (min(values), max(values)) if values else (0.0, 10.0)
        margin = max(1.0, (high - low) * 0.1)
        self.low, self.high = low - margin, high + margin

    def x(self, at: datetime.datetime) -> float:
        span = (self.t1 - self.t0).total_seconds()
        return LEFT + (WIDTH - LEFT - RIGHT) * (at - self.t0).total_seconds() / span

    def y(self, celsius: float | Decimal) -> float:
        span = self.high - self.low
        return TOP + (HEIGHT - TOP - BOTTOM) * (self.high - float(celsius)) / span

    def ticks(self, count: int = 6) -> list[float]:
        step = (self.high - self.low) / count
        return [self.low + step * i for i in range(count + 1)]


def svg(data: ChartData) -> str:
    scale = _Scale(data)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
        f"<title>{escape(data.title)}</title>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
    ]
    plot_right = WIDTH - RIGHT
    if data.band:
        top, bottom = scale.y(data.band[1]), scale.y(data.band[0])
        parts.append(
            f'<rect class="band" x="{LEFT}" y="{top:.1f}" width="{plot_right - LEFT}" '
            f'height="{bottom - top:.1f}" fill="#e6f4ea"><title>profile {data.band[0]}–'
            f"{data.band[1]} °C</title></rect>"
        )
    for number, start, end in data.excursions:
        x0, x1 = scale.x(max(start, scale.t0)), scale.x(min(end, scale.t1))
        parts.append(
            f'<rect class="excursion" x="{x0:.1f}" y="{TOP}" width="{max(x1 - x0, 2):.1f}" '
            f'height="{HEIGHT - TOP - BOTTOM}" fill="{EXCURSION_FILL}" fill-opacity="0.25">'
            f"<title>{escape(number)}</title></rect>"
        )
    for tick in scale.ticks():
        y = scale.y(tick)
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{plot_right}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:.1f}</text>'
        )
    for moment, anchor in ((scale.t0, "start"), (scale.t1, "end")):
        parts.append(
            f'<text x="{scale.x(moment):.1f}" y="{HEIGHT - BOTTOM + 16}" '
            f'text-anchor="{anchor}">{moment:%Y-%m-%d %H:%M} UTC</text>'
        )
    parts.append(f'<text x="12" y="{TOP - 10}">°C</text>')
    for index, (device_id, points) in enumerate(sorted(data.series.items())):
        colour = COLOURS[index % len(COLOURS)]
        path = " ".join(f"{scale.x(at):.1f},{scale.y(c):.1f}" for at, c in points)
        parts.append(
            f'<polyline class="readings" points="{path}" fill="none" stroke="{colour}" '
            f'stroke-width="1.5"><title>{escape(device_id)}</title></polyline>'
        )
        parts.append(
            f'<text x="{LEFT + 8 + 110 * index}" y="{TOP - 10}" fill="{colour}">'
            f"{escape(device_id)}</text>"
        )
    parts.append(
        f'<text x="{plot_right}" y="{TOP - 10}" text-anchor="end">{escape(data.title)}</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts)


def png(data: ChartData) -> bytes:
    from PIL import Image, ImageDraw

    scale = _Scale(data)
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image, "RGBA")
    plot_right = WIDTH - RIGHT
    if data.band:
        draw.rectangle(
            [LEFT, scale.y(data.band[1]), plot_right, scale.y(data.band[0])], fill="#e6f4ea"
        )
    for _, start, end in data.excursions:
        x0, x1 = scale.x(max(start, scale.t0)), scale.x(min(end, scale.t1))
        draw.rectangle([x0, TOP, max(x1, x0 + 2), HEIGHT - BOTTOM], fill=(217, 72, 15, 64))
    for tick in scale.ticks():
        y = scale.y(tick)
        draw.line([LEFT, y, plot_right, y], fill="#dddddd")
        draw.text((8, y - 6), f"{tick:.1f}", fill="black")
    for index, (device_id, points) in enumerate(sorted(data.series.items())):
        colour = COLOURS[index % len(COLOURS)]
        if len(points) > 1:
            draw.line([(scale.x(at), scale.y(c)) for at, c in points], fill=colour, width=2)
        draw.text((LEFT + 8 + 110 * index, TOP - 20), device_id, fill=colour)
    draw.text((LEFT, HEIGHT - BOTTOM + 8), f"{scale.t0:%Y-%m-%d %H:%M} UTC", fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
