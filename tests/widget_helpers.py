"""Operating an attnkit.widgets explorer without a browser, for the test_widgets*.py modules."""


def controls(box):
    """Every widget with a description inside `box`, by description."""
    found, stack = {}, [box]
    while stack:
        w = stack.pop()
        if getattr(w, "description", ""):
            found[w.description] = w
        stack.extend(getattr(w, "children", ()))
    return found


def shown(box):
    """What the explorer's Output holds: (png, text)."""
    (output,) = box.children[-1].outputs
    assert output["output_type"] == "display_data"
    return output["data"]["image/png"], output["data"]["text/plain"]


def assert_redraws(box, description, value):
    """Move the control named `description` to `value`; the picture and the text must both change."""
    before = shown(box)
    controls(box)[description].value = value
    after = shown(box)
    assert after[0] != before[0] and after[1] != before[1], f"moving {description!r} did not redraw"
    return after[1]
