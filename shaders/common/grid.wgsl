// grid.wgsl — indices of folded grids: the linear workgroup of Kernel.grid1d, the row workgroup of Kernel.grid2d
//
// Provides:  workgroup_index(wid, nwg) -> u32  linear index of a 1-D workgroup count folded into (x, y)
//                                              by Kernel.grid1d: wid.y * num_workgroups.x + wid.x
//            row_workgroup(wid, nwg) -> u32    row workgroup of a Kernel.grid2d grid, folded into (y, z):
//                                              wid.z * num_workgroups.y + wid.y
//            linear_index(wid, nwg, lid, wg_size) -> u32
//                                              one invocation per element of a folded 1-D grid:
//                                              workgroup_index(wid, nwg) * wg_size + lid
// Needs:     nothing (wid = @builtin(workgroup_id), nwg = @builtin(num_workgroups),
//            lid = @builtin(local_invocation_index))

fn workgroup_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.y * nwg.x + wid.x;
}

fn row_workgroup(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.z * nwg.y + wid.y;
}

fn linear_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, wg_size: u32) -> u32 {
  return workgroup_index(wid, nwg) * wg_size + lid;
}
