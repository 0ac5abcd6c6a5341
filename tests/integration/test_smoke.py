"""The smallest end-to-end check: mount, list, read, unmount."""
import os


def test_mount_lists_every_run(mount, fake):
    runs = sorted(os.listdir(mount.path("runs")))
    assert runs == sorted(fake.dlq_ids())
    assert mount.status()["state"] == "ready"
