// Types of the hugetlb pool and mappings (README: "hugetlb").

/** A hugetlb page size by folio order: 9 is 2 MiB (2048 kB), 18 is 1 GiB (1048576 kB). */
export type HugetlbOrder = 9 | 18;

/** One size's hugetlb pool counters ({@link PageArray.hugetlbPool}), as the kernel's sysfs names them. */
export interface HugetlbPoolCounts {
  /** The page size's order (9 or 18). */
  order: HugetlbOrder;
  /** The page size in kB (2048 or 1048576), as in `hugepages-<size>kB`. */
  pageSizeKb: number;
  /** Pages in the pool (nr_hugepages). */
  total: number;
  /** Free pool pages, reserved ones included (free_hugepages). */
  free: number;
  /** Free pages promised to private mappings that have not faulted them in yet (resv_hugepages). */
  reserved: number;
  /** Pages in use: mapped, pinned, or held by a file (total - free). */
  used: number;
}
