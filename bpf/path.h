/* Resolving a (dentry, vfsmount) to an absolute path inside a BPF program. bpf_d_path is not
 * available to tp_btf or tracepoint programs, so the dentry chain is walked here, crossing
 * mount points, with bpf_loop (5.17+) so the verifier checks one step, not 48. */
#ifndef CUSTOS_PATH_H
#define CUSTOS_PATH_H

/* Scratch space for building a path: bpf_loop callbacks write here (a map value the verifier
 * can bound), then the result is copied into the ring-buffer record. */
struct scratch {
	char path[CUSTOS_PATH_BUF];
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_map SEC(".maps");

struct walk {
	struct dentry *d;
	struct vfsmount *vm;
	struct mount *m;
	__u32 off;
	__u32 truncated;
};

/* One step of the walk from the leaf up to the namespace root, appending names leaf first,
 * each NUL-terminated. */
static long walk_step(__u32 i, void *arg)
{
	struct walk *w = arg;
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch_map, &zero);
	if (!s)
		return 1;
	/* Locals, not w->…: CO-RE must relocate kernel types only, never this struct. */
	struct dentry *d = w->d;
	struct vfsmount *vm = w->vm;
	struct mount *m = w->m;
	struct dentry *root = BPF_CORE_READ(vm, mnt_root);
	struct dentry *parent = BPF_CORE_READ(d, d_parent);

	if (d == root || d == parent) {
		__u32 off = w->off;
		if (d != root && off <= CUSTOS_PATH_BUF - CUSTOS_NAME_MAX) {
			/* A root that is not the mount's: a pseudo file (memfd) or a disconnected
			 * dentry. Its own name is all there is ("memfd:name"); skip a bare "/". */
			const unsigned char *name = BPF_CORE_READ(d, d_name.name);
			long n = bpf_probe_read_kernel_str(&s->path[off], CUSTOS_NAME_MAX, name);
			if (n > 1 && !(n == 2 && s->path[off] == '/'))
				w->off = off + n;
		}
		struct mount *up = BPF_CORE_READ(m, mnt_parent);
		if (up == m || !up)
			return 1; /* reached the root of the namespace (or of an internal mount) */
		w->d = BPF_CORE_READ(m, mnt_mountpoint); /* continue in the parent mount */
		w->m = up;
		w->vm = (struct vfsmount *)((char *)up + bpf_core_field_offset(struct mount, mnt));
		return 0;
	}
	__u32 off = w->off;
	if (off > CUSTOS_PATH_BUF - CUSTOS_NAME_MAX) {
		w->truncated = 1;
		return 1;
	}
	const unsigned char *name = BPF_CORE_READ(d, d_name.name);
	long n = bpf_probe_read_kernel_str(&s->path[off], CUSTOS_NAME_MAX, name);
	if (n <= 0)
		return 1;
	w->off = off + n;
	w->d = parent;
	return 0;
}

/* Writes the path of (d, vm) into dst (CUSTOS_PATH_BUF bytes), components leaf first, each
 * NUL-terminated; returns the bytes used and sets *truncated when a limit was hit. */
static __always_inline __u32 walk_path(char *dst, struct dentry *d, struct vfsmount *vm,
				       __u32 *truncated)
{
	struct walk w = {
		.d = d,
		.vm = vm,
		.m = (struct mount *)((char *)vm - bpf_core_field_offset(struct mount, mnt)),
	};
	long steps = bpf_loop(CUSTOS_MAX_DEPTH, walk_step, &w, 0);
	*truncated = w.truncated || steps >= CUSTOS_MAX_DEPTH;
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch_map, &zero);
	/* Constant size: the verifier cannot follow a variable one here; the length marks the end. */
	if (s && bpf_probe_read_kernel(dst, CUSTOS_PATH_BUF, s->path) == 0)
		return w.off;
	return 0;
}

#endif
