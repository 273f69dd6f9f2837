"""Properties: whatever the text and the order of its parts, reassembly gives it back."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from smsmenu.smpp import concat, pdu
from smsmenu.smpp.text import Alphabet, decode


@settings(max_examples=150, deadline=None)
@given(
    text=st.text(min_size=1, max_size=600),
    reference=st.integers(0, 255),
    alphabet=st.sampled_from(list(Alphabet)),
    data=st.data(),
)
def test_split_then_reassemble_in_any_order(
    text: str, reference: int, alphabet: Alphabet, data: st.DataObject
) -> None:
    split = concat.split(text, reference, alphabet)
    sms = [
        pdu.ShortMessage("1380", "10001", part, split.data_coding, split.esm_class)
        for part in split.parts
    ]
    for sm in sms:
        assert len(sm.short_message) <= (140 if split.data_coding == 8 else 159)
    if len(sms) == 1:
        segment, payload = concat.segment_of(sms[0])
        assert segment is None
        assert decode(payload, split.data_coding, alphabet) == text
        return
    order = data.draw(st.permutations(sms))
    r: concat.Reassembler[int] = concat.Reassembler()
    joined = None
    for token, sm in enumerate(order):
        segment, payload = concat.segment_of(sm)
        assert segment is not None and segment.reference == reference
        joined = r.add(sm.source, sm.destination, segment, sm.data_coding, payload, token, 0)
    assert joined is not None
    assert decode(joined.payload, joined.data_coding, alphabet) == text
