"""Pages of recalls: the trace graph of a lot, and a recall with the consignee's answer form."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from batches.api import visible_batches
from pharmadms.exceptions import ApplicationError, InvalidInput

from . import selectors, services
from .api import trace_for

NODE_WIDTH, NODE_HEIGHT, COLUMN_GAP, ROW_GAP, MARGIN = 230, 46, 110, 18, 16
# A column lists at most this many partners; the rest are counted, not drawn.
MAX_PER_COLUMN = 150


def trace_graph(trace) -> dict:
    """Boxes per tier in columns (the manufacturer's side on the left) and the edges between
    them with their quantities, laid out for an inline SVG."""
    tiers = trace.tiers()
    if trace.direction == "backward":
        tiers = list(reversed(tiers))
    boxes, hidden = {}, []
    for column, nodes in enumerate(tiers):
        hidden.append(max(0, len(nodes) - MAX_PER_COLUMN))
        for row, node in enumerate(nodes[:MAX_PER_COLUMN]):
            boxes[node.partner_id] = {
                "node": node,
                "x": MARGIN + column * (NODE_WIDTH + COLUMN_GAP),
                "y": MARGIN + 22 + row * (NODE_HEIGHT + ROW_GAP),
            }
    edges = []
    for edge in trace.edges:
        source, target = boxes.get(edge.supplier_id), boxes.get(edge.consignee_id)
        if source is None or target is None:
            continue
        x1, y1 = source["x"] + NODE_WIDTH, source["y"] + NODE_HEIGHT / 2
        x2, y2 = target["x"], target["y"] + NODE_HEIGHT / 2
        edges.append(
            {
                "edge": edge,
                "x1": x1,
                "y1": y1,
                "x2": x2,
                "y2": y2,
                "lx": (x1 + x2) / 2,
                "ly": (y1 + y2) / 2 - 4,
            }
        )
    rows = max((len(nodes[:MAX_PER_COLUMN]) for nodes in tiers), default=1)
    return {
        "boxes": list(boxes.values()),
        "edges": edges,
        "columns": [
            {
                "x": MARGIN + i * (NODE_WIDTH + COLUMN_GAP),
                "tier": nodes[0].tier,
                "hidden": hidden[i],
            }
            for i, nodes in enumerate(tiers)
        ],
        "width": MARGIN * 2 + len(tiers) * (NODE_WIDTH + COLUMN_GAP),
        "height": MARGIN * 2 + 30 + rows * (NODE_HEIGHT + ROW_GAP),
        "node_width": NODE_WIDTH,
        "node_height": NODE_HEIGHT,
    }


@login_required
def trace_page(request, batch_id: int):
    """The trace of a lot as a graph: tiers in columns, units shipped on the edges."""
    batch = get_object_or_404(
        visible_batches(request.user).select_related("product__manufacturer"), pk=batch_id
    )
    direction = request.GET.get("direction", "forward")
    try:
        trace = trace_for(request.user, batch, direction, request.GET.get("partner"))
    except ApplicationError as error:
        return render(request, "recalls/trace.html", {"batch": batch, "refusal": error}, status=400)
    context = {"batch": batch, "trace": trace, "graph": trace_graph(trace)}
    return render(request, "recalls/trace.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def recall_page(request, pk: int):
    """A recall as its reader may see it; a consignee answers here (the response form)."""
    recall = get_object_or_404(selectors.visible_recalls(request.user), pk=pk)
    user = request.user
    is_firm = user.sees_everything or user.partner_id == recall.firm_id
    refusal, status = None, 200
    if request.method == "POST":
        try:

            def number(name: str) -> int:
                value = request.POST.get(name, "0").strip() or "0"
                if not value.isdigit():
                    raise InvalidInput(f"{name} is a whole number", code="invalid_quantity")
                return int(value)

            batch = None
            batch_id = request.POST.get("batch", "").strip()
            if batch_id:
                lot = (
                    recall.lots.filter(batch_id=int(batch_id)).select_related("batch").first()
                    if batch_id.isdigit()
                    else None
                )
                if lot is None:
                    raise InvalidInput("that lot is not in this recall", code="lot_not_recalled")
                batch = lot.batch
            services.recall_acknowledge(
                recall=recall,
                actor=user,
                batch=batch,
                quantity_on_hand=number("quantity_on_hand"),
                quantity_returned=number("quantity_returned"),
                quantity_destroyed=number("quantity_destroyed"),
            )
        except ApplicationError as error:
            refusal, status = error, error.status_code
        else:
            messages.success(request, f"Your answer to recall {recall.number} is recorded.")
            return redirect("recalls:recall", pk=recall.pk)
    rows = recall.consignees.select_related("partner", "batch").order_by("tier", "partner__name")
    own = [row for row in rows if row.partner_id == user.partner_id]
    context = {
        "recall": recall,
        "is_firm": is_firm,
        "consignees": rows if is_firm else own,
        "own": own,
        "notices": recall.notices.filter(partner_id=user.partner_id),
        "effectiveness": selectors.recall_effectiveness(recall) if is_firm else None,
        "refusal": refusal,
    }
    return render(request, "recalls/recall.html", context, status=status)
