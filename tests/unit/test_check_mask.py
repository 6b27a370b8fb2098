"""Mask resolution against the NVML inventory, as CUDA reads CUDA_VISIBLE_DEVICES."""

import dataclasses

from gpufix.hardware.mask import resolve_mask
from gpufix.hardware.model import GpuInfo, Inventory, MigInfo
from gpufix.hardware.testing import UUID_3090, UUID_5060, user_inventory


def targets(res):
    return [(t.nvml_index, t.mig_uuid) for t in res.targets]


def test_index_under_pci_order_names_the_3090():
    res = resolve_mask("1", "PCI_BUS_ID", user_inventory())
    assert targets(res) == [(1, None)]
    assert res.order_known and res.expected_count == 1 and not res.truncated


def test_pci_order_follows_bus_ids_not_nvml_indices():
    inv = user_inventory()
    # NVML lists the 3090 first, but its bus id is higher: CUDA's PCI_BUS_ID index 0 is still the 5060 Ti
    a, b = inv.gpus
    inv.gpus = [dataclasses.replace(b, nvml_index=0, pci_bus_id="00000000:02:00.0"),
                dataclasses.replace(a, nvml_index=1, pci_bus_id="00000000:01:00.0")]
    res = resolve_mask("0", "PCI_BUS_ID", inv)
    assert targets(res) == [(1, None)]  # NVML index 1 = the 5060 Ti


def test_fastest_first_index_is_not_mapped_and_says_so():
    res = resolve_mask("1", "FASTEST_FIRST", user_inventory())
    assert targets(res) == [(None, None)]
    assert not res.order_known and res.expected_count == 1
    assert any("FASTEST_FIRST" in n and "UUID check" in n for n in res.notes)


def test_fastest_first_with_uuid_entries_is_known():
    res = resolve_mask(UUID_3090, "FASTEST_FIRST", user_inventory())
    assert targets(res) == [(1, None)] and res.order_known


def test_uuid_and_unique_prefix():
    assert targets(resolve_mask(UUID_5060, "PCI_BUS_ID", user_inventory())) == [(0, None)]
    assert targets(resolve_mask("GPU-3b9e", "PCI_BUS_ID", user_inventory())) == [(1, None)]


def test_ambiguous_prefix_ends_the_list():
    inv = user_inventory()
    inv.gpus[1] = dataclasses.replace(inv.gpus[1], uuid="GPU-5a1f0c3e-ffff-4c1e-9f00-333333333333")
    res = resolve_mask("GPU-5a1f,0", "PCI_BUS_ID", inv)
    assert targets(res) == []
    assert [e.status for e in res.entries] == ["invalid", "ignored"]
    assert "ambiguous" in res.entries[0].detail


def test_first_invalid_entry_truncates():
    res = resolve_mask("1,5,0", "PCI_BUS_ID", user_inventory())
    assert targets(res) == [(1, None)]
    assert [e.status for e in res.entries] == ["ok", "invalid", "ignored"]
    assert "index 5 is past the last GPU (NVML sees 2: 0-1)" in res.entries[1].detail


def test_unknown_uuid_truncates_and_missing_index_leaves_nothing():
    res = resolve_mask("GPU-deadbeef,1", "PCI_BUS_ID", user_inventory())
    assert targets(res) == [] and res.entries[0].status == "invalid"
    assert targets(resolve_mask("5", "PCI_BUS_ID", user_inventory())) == []


def test_no_policy_means_every_gpu_in_pci_order():
    res = resolve_mask(None, "PCI_BUS_ID", user_inventory())
    assert targets(res) == [(0, None), (1, None)]


def _mig_inventory():
    mig_a = MigInfo("MIG-aaaa1111-2222-3333-4444-555555555555", 1, 0, 10 * 2**30, "A100 3g.20gb")
    mig_b = MigInfo("MIG-bbbb1111-2222-3333-4444-555555555555", 2, 0, 10 * 2**30, "A100 3g.20gb")
    gpu = GpuInfo(0, "NVIDIA A100-SXM4-40GB", "GPU-a100a100-0000-0000-0000-000000000000", "00000000:07:00.0",
                  40 * 2**30, 39 * 2**30, "8.0", mig_mode=True, mig_devices=(mig_a, mig_b))
    return Inventory("550.54", [gpu])


def test_mig_uuid_prefix_and_legacy_form():
    inv = _mig_inventory()
    res = resolve_mask("MIG-bbbb", "PCI_BUS_ID", inv)
    assert targets(res) == [(0, "MIG-bbbb1111-2222-3333-4444-555555555555")]
    res = resolve_mask("MIG-GPU-a100a100-0000-0000-0000-000000000000/1/0", "PCI_BUS_ID", inv)
    assert targets(res) == [(0, "MIG-aaaa1111-2222-3333-4444-555555555555")]


def test_cuda_uses_only_the_first_mig_instance():
    res = resolve_mask("MIG-aaaa,MIG-bbbb", "PCI_BUS_ID", _mig_inventory())
    assert res.expected_count == 1
    assert [e.status for e in res.entries] == ["ok", "ignored"]
    assert "one MIG instance per process" in res.entries[1].detail


def test_whole_gpu_in_mig_mode_gets_a_note():
    res = resolve_mask("0", "PCI_BUS_ID", _mig_inventory())
    assert any("MIG mode" in n for n in res.notes)
