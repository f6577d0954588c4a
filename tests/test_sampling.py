import numpy as np
import pytest
import torch

from gantlitz.data.sampling import (
    GroupedBatchSampler,
    PatchDataset,
    inference_tiles,
    patch_loader,
    raw_to_network,
    training_locations,
)
from gantlitz.data.store import PatchStore
from helpers import assert_roundoff_equal


def test_paper_grid_counts():
    full = np.ones((4096, 6144), np.uint8)
    assert len(training_locations(full, 512)) == 23 * 15 == 345
    assert len(inference_tiles(4096, 6144, 512)) == 12 * 8 == 96


def test_mask_filtering():
    mask = np.zeros((4096, 6144), np.uint8)
    mask[1000:1001, 3000:3001] = 1  # one visible pixel: the overlapping patches containing it
    locs = training_locations(mask, 512)
    assert all(t <= 1000 < t + 512 and l <= 3000 < l + 512 for t, l in locs)
    assert len(locs) == 2 * 2
    mask[:] = 0
    mask[:, :256] = 1  # a strip only the first column of patches reaches
    locs = training_locations(mask, 512)
    assert len(locs) == 15 and all(l == 0 for _, l in locs)
    mask[:, :257] = 1  # one more column: the half-overlapping patches at left=256 see it too
    assert len(training_locations(mask, 512)) == 30
    with pytest.raises(ValueError, match="no patch location"):
        training_locations(np.zeros((1024, 1024), np.uint8), 512)


def test_sampler_groups_and_determinism():
    locs = [(t, l) for t in range(0, 1024, 128) for l in range(0, 1024, 128)]
    s = GroupedBatchSampler(locs, num_subjects=5, batch_size=8, group_size=4, seed=3)
    batches = [b for _, b in zip(range(50), s)]
    for b in batches:
        assert len(b) == 8
        for g in range(2):
            group = b[g * 4 : (g + 1) * 4]
            assert len({(t, l) for _, t, l, _ in group}) == 1  # one location per group
    all_samples = [x for b in batches for x in b]
    assert {x[0] for x in all_samples} == set(range(5))
    assert {x[3] for x in all_samples} == {False, True}
    assert len({(x[1], x[2]) for x in all_samples}) > 30  # locations vary between groups
    # a pure function of (seed, step): a resumed sampler continues identically
    resumed = GroupedBatchSampler(locs, 5, 8, 4, seed=3, start_step=20)
    assert [b for _, b in zip(range(30), resumed)] == batches[20:]
    assert s.batch_at(7) == batches[7]
    assert GroupedBatchSampler(locs, 5, 8, 4, seed=4).batch_at(7) != batches[7]
    noflip = GroupedBatchSampler(locs, 5, 8, 4, seed=3, flip=False, steps=10)
    assert len(noflip) == 10 and not any(x[3] for b in noflip for x in b)
    with pytest.raises(ValueError, match="multiple of group_size"):
        GroupedBatchSampler(locs, 5, 6, 4)


def test_read_patch_flip_and_mask(prepared_store):
    store = PatchStore(prepared_store)
    tex = np.load(prepared_store / "textures.npy")
    mask = store.mask
    p = store.read_patch(1, 64, 0, 128)
    assert p.shape == (5, 128, 128) and p.dtype == np.float32
    assert p.min() >= -1 and p.max() <= 1
    expect = (tex[1, 64:192, 0:128].astype(np.float32) / 65535 * 2 - 1) * mask[64:192, 0:128, None]
    assert_roundoff_equal(p, expect.transpose(2, 0, 1), what="decoded patch")
    f = store.read_patch(1, 64, 0, 128, flip=True)
    mirrored = tex[1, :, ::-1]
    expect_f = (mirrored[64:192, 0:128].astype(np.float32) / 65535 * 2 - 1) * mask[64:192, 0:128, None]
    assert_roundoff_equal(f, expect_f.transpose(2, 0, 1), what="decoded flipped patch")
    assert (p[:, mask[64:192, 0:128] == 0] == 0).all()
    with pytest.raises(ValueError, match="does not fit"):
        store.read_patch(0, 200, 0, 128)
    whole = store.read_whole(0, 64, 64)
    assert whole.shape == (5, 64, 64) and np.abs(whole).max() <= 1


def test_dataset_and_dataloader_with_workers(prepared_store):
    ds = PatchDataset(prepared_store, 128)
    assert len(ds.locations) == 9 and len(ds) == 3 * 9 * 2
    item = ds[5]
    assert set(item) == {"image", "top", "left", "subject", "flip"} and item["image"].shape == (5, 128, 128)
    assert ds[(2, 128, 64, True)]["image"].equal(torch.from_numpy(ds.store.read_patch(2, 128, 64, 128, True)))
    loader = patch_loader(prepared_store, 128, batch_size=4, group_size=2, seed=1, steps=6, workers=2)
    seen = list(loader)
    assert len(seen) == 6
    sampler = GroupedBatchSampler(ds.locations, 3, 4, 2, seed=1)
    for step, batch in enumerate(seen):
        assert batch["image"].shape == (4, 5, 128, 128) and batch["image"].dtype == torch.float32
        keys = list(zip(batch["subject"].tolist(), batch["top"].tolist(), batch["left"].tolist(),
                        batch["flip"].tolist()))
        assert keys == sampler.batch_at(step)
        assert batch["top"][0] == batch["top"][1] and batch["left"][2] == batch["left"][3]
        ref = torch.stack([torch.from_numpy(ds.store.read_patch(s, t, l, 128, f)) for s, t, l, f in keys])
        assert torch.equal(batch["image"], ref)
    with pytest.raises(ValueError, match="does not divide"):
        PatchDataset(prepared_store, 512)


def test_raw_batches_decode_to_the_float_patches(prepared_store):
    """The training path (stored uint16 through the workers, decoded on the device) gives the float patches
    `read_patch` gives, masks included, up to the round-off of another order of the decode's arithmetic."""
    loader = patch_loader(prepared_store, 128, batch_size=4, group_size=2, seed=3, steps=3, workers=2, raw=True)
    store = PatchStore(prepared_store)
    for batch in loader:
        assert batch["image"].dtype == torch.int16 and batch["image"].shape == (4, 128, 128, 5)
        assert batch["mask"].dtype == torch.uint8 and batch["mask"].shape == (4, 128, 128)
        keys = zip(batch["subject"].tolist(), batch["top"].tolist(), batch["left"].tolist(), batch["flip"].tolist())
        ref = torch.stack([torch.from_numpy(store.read_patch(s, t, l, 128, f)) for s, t, l, f in keys])
        decoded = raw_to_network(batch["image"], batch["mask"])
        assert decoded.shape == ref.shape
        assert_roundoff_equal(decoded, ref, what="device decode vs read_patch")
    assert store.read_patch_raw(0, 0, 0, 64).dtype == np.uint16
