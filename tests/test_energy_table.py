"""The energy report's text table (``step-energy``, the run log): each cell checked against a row
worked by hand, for every kind of layer the table distinguishes."""

from __future__ import annotations

from step.energy.report import format_layer_table

ROWS = [
    # the encoder: real-valued input (no input rate, not binary), NeuroBench sees it as MACs
    dict(name="encoder.conv", type="Conv2d", kind="conv", macs=1000.0, input_rate=None, output_rate=0.25,
         binary=False, sops=0.0, nonspike_macs=4000.0, exact_ops=4000.0, nb_seen=True, nb_ops=4000.0,
         nb_spiking=False, energy_pj=18400.0, energy_exact_pj=18400.0),
    # a spiking linear layer whose name and type are cut at 34 and 16 characters
    dict(name="blocks.0.attn.q_linear.a_very_long_module_name", type="LinearWithAVeryLongTypeName", kind="linear",
         macs=256.0, input_rate=0.125, output_rate=0.5, binary=True, sops=128.0, nonspike_macs=0.0, exact_ops=96.0,
         nb_seen=True, nb_ops=100.0, nb_spiking=True, energy_pj=115.2, energy_exact_pj=86.4),
    # a ternary product from a record before the conventions (no exact cells), unseen by NeuroBench
    dict(name="attn.qk", type="matmul", kind="matmul", macs=64.0, input_rate=0.5, output_rate=None, ternary=True,
         sops=32.0, nb_seen=False, energy_pj=28.8),
    # integer spikes, no operations left: 0, not empty
    dict(name="head", type="Linear", kind="linear", macs=10.0, input_rate=0.3, output_rate=None, integer=True,
         sops=0.0, nonspike_macs=0.0, nb_seen=True, nb_ops=3.0, nb_spiking=True, energy_pj=0.0, energy_exact_pj=0.0),
    # a neuron: no synaptic cells
    dict(name="lif1", type="LIF", kind="neuron", macs=0, input_rate=None, output_rate=0.1234567, energy_pj=12.5),
]


def test_the_layer_table_cell_by_cell():
    lines = format_layer_table(ROWS).split("\n")
    assert lines[0].split() == ["layer", "type", "MACs/step", "in", "rate", "bin", "paper", "ops", "exact", "ops",
                                "NB", "ops", "out", "rate", "paper", "pJ", "exact", "pJ"]
    assert lines[1] == "-" * len(lines[0]) and len(lines[0]) == 145
    assert lines[2:-1] == [
        'encoder.conv                       Conv2d                  1000           no        4000        4000       4000M   0.2500    1.84e+04    1.84e+04',
        'blocks.0.attn.q_linear.a_very_long LinearWithAVeryL         256  0.1250  yes         128          96         100   0.5000       115.2        86.4',
        'attn.qk                            matmul                    64  0.5000  ter          32                                         28.8            ',
        'head                               Linear                    10  0.3000  int           0                       3                    0           0',
        'lif1                               LIF                        0                                                    0.1235        12.5            ',
    ]
    assert lines[-1] == "paper ops: SOPs (MACs on real-valued inputs); NB ops: NeuroBench effective ACs, M = MACs"


def test_an_empty_table_is_the_header_and_the_legend():
    assert len(format_layer_table([]).split("\n")) == 3


def test_a_row_without_macs_or_energy_shows_zeros():
    """Rows of records from before a field existed still print."""
    line = format_layer_table([{"name": "old", "type": "LIF", "kind": "neuron"}]).split("\n")[2]
    assert line.split() == ["old", "LIF", "0", "0"]
