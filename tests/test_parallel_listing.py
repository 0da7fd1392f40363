"""Cloud listings in parallel by sub-folder (discovered with the delimiter) list exactly what
one sequential listing does, on every cloud emulator, and stop their threads when closed."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from drivers import NotFound
from emulators import new_store

CLOUDS = ["s3", "gcs", "azure"]


def keys(driver, prefix: str = "") -> list[str]:
    return sorted(info.key for page in driver.list_pages(prefix) for info in page)


def fill(store, names: list[str]) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda name: store.write_raw(f"{store.path}/{name}", name.encode()), names))


@pytest.fixture(params=CLOUDS)
def cloud_store(request, endpoint_for, tmp_path_factory):
    return new_store(request.param, endpoint_for, tmp_path_factory)


def test_parallel_listing_lists_what_the_sequential_one_does(cloud_store):
    names = [f"p{i:02d}/img{j}.jpg" for i in range(12) for j in range(3)]
    names += ["top.jpg", "p03/deeper/x.jpg", ".dataloopy/y.jpg"]
    fill(cloud_store, names)
    fill(cloud_store, [f".dataloop/thumbnails/{i}.jpg" for i in range(5)])
    fill(cloud_store, ["sub/.dataloop/hidden-too.jpg"])  # a nested dataset's artifacts
    cloud_store.write_raw(f"{cloud_store.path}/empty/", b"")  # a folder marker: no item
    sequential = cloud_store.make(list_concurrency=1)
    parallel = cloud_store.make(list_concurrency=4)
    parallel.inner.page_size = 2  # discovery and folders both span several pages
    assert keys(parallel) == keys(sequential) == sorted(names)
    assert keys(parallel, "p03/") == ["p03/deeper/x.jpg", "p03/img0.jpg", "p03/img1.jpg",
                                      "p03/img2.jpg"]


def test_a_first_page_ending_inside_a_folder_lists_its_rest_and_the_folders_after(cloud_store):
    names = [f"f{i}/x{j}.jpg" for i in range(5) for j in range(3)] + ["f1.jpg", "g.jpg", "f0.txt"]
    fill(cloud_store, names)
    driver = cloud_store.make(list_concurrency=3)
    driver.inner.page_size = 2  # the first page ends inside f0/, with f0/x2.jpg still to come
    assert keys(driver) == sorted(names)


def spied(driver) -> tuple[list[str], list[str]]:
    """The prefixes the driver's plain and delimiter listings are asked for, as they are."""
    inner = driver.inner
    plain, delimited = [], []
    pages, folders = inner._pages, inner._delimited
    inner._pages = lambda prefix, **kwargs: (plain.append(prefix), pages(prefix, **kwargs))[1]
    inner._delimited = lambda prefix, **kwargs: (delimited.append(prefix),
                                                 folders(prefix, **kwargs))[1]
    return plain, delimited


def test_a_flat_start_goes_on_as_one_plain_listing(cloud_store):
    names = ["-a.jpg", ".b.jpg", "a.jpg", "b.jpg", "c.jpg", "d.jpg", "zz/later/x.jpg", "zz/y.jpg"]
    fill(cloud_store, names)
    fill(cloud_store, [f".dataloop/thumbnails/{i}.jpg" for i in range(3)])
    driver = cloud_store.make(list_concurrency=4)
    driver.inner.page_size = 2  # the first page is full and has no folder
    plain, delimited = spied(driver)
    assert keys(driver) == sorted(names)
    assert delimited == [] and plain[0] == driver.inner.base, (plain, delimited)


def test_a_group_leaves_out_the_folders_its_prefix_shares_with_the_first_page(cloud_store):
    names = [f"{group}{i}/x{j}.jpg" for group in "ab" for i in range(10) for j in range(3)]
    fill(cloud_store, names)
    driver = cloud_store.make(list_concurrency=2)
    driver.inner.page_size = 4  # ends inside a1/; the group "a" lists a2/ to a9/, not a0/
    plain, _ = spied(driver)
    assert sorted(info.key for page in driver.list_pages() for info in page) == sorted(names)
    assert driver.inner.base + "a" in plain, plain


def test_a_rest_that_fits_in_one_page_is_one_listing(cloud_store):
    """The first page shows 3 objects a folder: the 10 folders after it are one page, listed
    as one prefix rather than ten short listings (Azure's 5,000-blob pages meet this)."""
    names = [f"f{i:02d}/x{j}.jpg" for i in range(20) for j in range(3)]
    fill(cloud_store, names)
    driver = cloud_store.make(list_concurrency=4)
    driver.inner.page_size = 30  # f00/ to f09/; f09/ may go on
    plain, delimited = spied(driver)
    assert keys(driver) == sorted(names)
    base = driver.inner.base
    assert sorted(plain) == [base, base + "f09/", base + "f1"], plain
    assert delimited == [base], delimited


def test_where_a_listing_cannot_start_after_a_name_no_prefix_lists_the_first_page_again(
        cloud_store):
    """p015/ to p029/ share the prefix p0 with the first page's folders: one listing of p0
    from after p015/ on S3 and GCS; on Azure, which would list p000/ to p014/ again to drop
    them, p01 and p02 (two listings of one page, not one of two)."""
    names = [f"p{i:03d}/x{j}.jpg" for i in range(30) for j in range(3)]
    fill(cloud_store, names)
    driver = cloud_store.make(list_concurrency=4)
    driver.inner.page_size = 45  # p000/ to p014/
    plain, _ = spied(driver)
    assert keys(driver) == sorted(names)
    base = driver.inner.base
    groups = ["p0"] if driver.inner.starts_after_names else ["p01", "p02"]
    assert sorted(plain) == sorted([base, base + "p014/"] + [base + g for g in groups]), plain


def test_one_top_folder_is_descended_into(cloud_store):
    names = [f"only/f{i}/x{j}.jpg" for i in range(5) for j in range(2)] + ["only/top.jpg"]
    fill(cloud_store, names)
    driver = cloud_store.make(list_concurrency=3)
    driver.inner.page_size = 2  # the first page ends in only/f0/, the next in only/f1/
    plain, delimited = spied(driver)
    assert keys(driver) == sorted(names)
    base = driver.inner.base
    assert delimited == [base, base + "only/"], delimited
    assert {base + f"only/f{i}/" for i in (2, 3, 4)} <= set(plain), plain


def test_closing_a_parallel_listing_stops_its_threads(cloud_store):
    fill(cloud_store, [f"p{i}/x{j}.jpg" for i in range(6) for j in range(4)])
    driver = cloud_store.make(list_concurrency=3)
    driver.inner.page_size = 1
    before = {t.ident for t in threading.enumerate()}
    pages = driver.list_pages()
    next(iter(pages))
    pages.close()
    left = [t for t in threading.enumerate() if t.ident not in before and t.name == "syncd-list"]
    assert left == []


def test_a_missing_bucket_is_one_error(cloud_store):
    driver = cloud_store.make(list_concurrency=4, bucket="no-such-bucket-x")
    with pytest.raises(NotFound):
        keys(driver)


def test_folders_sharing_a_prefix_are_listed_as_one_group(cloud_store):
    """About `list_concurrency` listings, not one per folder: the folders a*, b*, c* are
    three prefix listings; objects directly under the top that share a group's prefix
    (a0.jpg) come once, from the delimiter listing; the hidden folder is never in a group."""
    names = [f"{group}{i}/x{j}.jpg" for group in "abc" for i in range(4) for j in range(3)]
    names += ["a0.jpg", "a1x.jpg", "b.jpg", "c9.txt", "a0/deeper/y.jpg", ".data/q.jpg",
              ".dataloopx/z.jpg"]
    fill(cloud_store, names)
    fill(cloud_store, [f".dataloop/thumbnails/{i}.jpg" for i in range(5)])
    driver = cloud_store.make(list_concurrency=3)
    inner = driver.inner
    listed, _ = spied(driver)
    inner.page_size = 2  # the first page ends inside the hidden folder (S3, GCS)
    assert keys(driver) == sorted(names)
    base = inner.base
    assert {base + "a", base + "b", base + "c"} <= set(listed), listed
    assert not any(prefix.startswith(base + "a") and prefix != base + "a" for prefix in listed)
    assert all(not inner._hidden.startswith(prefix) for prefix in listed if prefix != base), listed
