"""What the page says, in one place: its figures (a probability, an accuracy and the images it was measured on, a
date) and its words for a mistake the command line words with a flag.

- A probability or an accuracy is shown with `percent` (classifier/model/confidence.py): one decimal, rounded down
  (a threshold up), the rule "not sure" is decided on; the answer, the bars, the card, the Many images table, the
  metrics and the Train tab all use it, so no two figures on the page round one number two ways.
- An accuracy always names the images it was measured on (`accuracy_words`), and below `FEW_IMAGES` says how little
  that is (`few_images_warning`): on 24 images one image moves it by more than 4 points.
- A date is written as UTC and marked up as `<time datetime=...>`; the page's script (`LOCAL_TIME_SCRIPT`, given to
  `launch`) rewrites it in the browser's own time zone and format.
- `page_message` is a training error as the page words it: the command line's advice names flags (`--weights FILE`),
  the page's names what to choose on the page. The command line's wording stays its own.
"""

from __future__ import annotations

from datetime import datetime, timezone

from ..data.images import ImageError
from ..errors import UsageError, first_line, quoted
from ..model.backbones import WEIGHTS_DIR_ENV, WeightsUnavailable, page_choices
from ..model.confidence import percent

FEW_IMAGES = 50  # an accuracy measured on fewer images than this is flagged as rough
# Rewrites every <time datetime=...> the page shows in the browser's time zone, as it appears (Markdown re-renders).
LOCAL_TIME_SCRIPT = """<script>
(() => {
  const local = () => document.querySelectorAll("time[datetime]:not([data-local])").forEach((node) => {
    const when = new Date(node.getAttribute("datetime"));
    if (isNaN(when)) return;
    node.textContent = when.toLocaleString(undefined, {dateStyle: "medium", timeStyle: "short"});
    node.title = node.getAttribute("datetime");
    node.dataset.local = "1";
  });
  new MutationObserver(local).observe(document.documentElement, {childList: true, subtree: true});
  document.addEventListener("DOMContentLoaded", local);
})();
</script>"""


def accuracy_words(accuracy, images, what: str = "validation") -> str:
    """`validation accuracy 91.7% on 24 images`, or `... unknown` when the model does not say."""
    if not isinstance(accuracy, (int, float)):
        return f"{what} accuracy unknown"
    return f"{what} accuracy {percent(accuracy)}" + (f" on {images} images" if isinstance(images, int) else "")


def few_images_warning(images, what: str = "validation") -> str | None:
    """Why an accuracy measured on `images` images is rough, when they are fewer than FEW_IMAGES; else None."""
    if not isinstance(images, int) or images >= FEW_IMAGES:
        return None
    if images == 0:
        return f"no {what} images: the accuracy says nothing yet; add photos to each class"
    return (
        f"only {images} {what} images: one image moves the accuracy by {100 / images:.1f} points; {FEW_IMAGES} or more "
        "give a figure to trust (add photos to each class)"
    )


def local_time(iso: str | None) -> str:
    """An ISO 8601 time (metadata.json's `trained_at`) as the page shows it: UTC in words inside a <time> element
    the page's script turns into the browser's local time; `unknown` when there is none or it is not a time."""
    try:
        when = datetime.fromisoformat(iso or "")
    except ValueError:
        return "unknown" if not iso else iso
    if when.tzinfo is None:  # metadata.json writes UTC; an older or hand-written one may leave the zone out
        when = when.replace(tzinfo=timezone.utc)
    utc = when.astimezone(timezone.utc)
    return f'<time datetime="{utc.isoformat()}">{utc:%d %b %Y, %H:%M} UTC</time>'


def page_message(error: Exception) -> str:
    """A user's mistake (UsageError, ImageError) as the page words it: what to do on the page, not which flag to
    pass. Errors the page words already pass as they are."""
    if isinstance(error, WeightsUnavailable):
        return (
            f"could not download the {error.backbone} ImageNet weights ({error.reason}); this machine may be offline. "
            f"Choose the backbone {quoted(next(iter(page_choices())))} (its weights ship with the app), or put "
            f"{error.names} in the app's weights folder (${WEIGHTS_DIR_ENV}) and train again"
        )
    if isinstance(error, (UsageError, ImageError)):
        return str(error)
    return first_line(error)
