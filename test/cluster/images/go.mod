// Tiny stdlib-only programs for the local cluster's images (see ../images.ts).
module ferry.dev/cluster-images

go 1.22
