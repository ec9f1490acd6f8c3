//! Elementwise and per-channel ops: relu² (`shaders/relu2.wgsl`), scales, scaled adds and
//! mixes (`shaders/channel.wgsl`), the gradient sum `add_into` (`shaders/add.wgsl`) and the
//! per-channel dot product of a scale's gradient in two stages (`shaders/reduce.wgsl`); the CPU
//! references are in `ops::elementwise`.
use crate::ops::elementwise::{self as ew, Channels};
use crate::ops::Real;
use crate::plan::op::{
    check_grid_dim, grid_1d, n64, tree_flops, uconst as u, uparam as p, BindingSpec, Cost, In, KernelCall, OpDef,
};

/// `[y | x]`: `y = relu(x)^2`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Relu2Fwd {
    pub count: usize,
}

/// `[dx | dy, x]` (accumulates).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Relu2Bwd {
    pub count: usize,
}

/// `[y | x, s]`: `y[i] = s[ch(i)] x[i]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScaleFwd {
    pub count: usize,
    pub ch: Channels,
    pub s_len: usize,
}

/// `[dx | dy, s]` (accumulates).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScaleBwd {
    pub count: usize,
    pub ch: Channels,
    pub s_len: usize,
}

/// `[out | a, b, s]`: `out[i] = a[i] + s[ch(i)] b[i]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScaledAddFwd {
    pub count: usize,
    pub ch: Channels,
    pub s_len: usize,
}

/// `[da, db | dout, s]` (accumulates).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScaledAddBwd {
    pub count: usize,
    pub ch: Channels,
    pub s_len: usize,
}

/// `[out | a, b, mix]`: `out[i] = mix[0][c] a[i] + mix[1][c] b[i]` (`resid_mix`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MixFwd {
    pub count: usize,
    pub ch: Channels,
}

/// `[da, db | dout, mix]` (accumulates).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MixBwd {
    pub count: usize,
    pub ch: Channels,
}

/// `[dst | src]`: `dst += src`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AddInto {
    pub count: usize,
}

/// `[out | a, b]`: a per-channel parameter's gradient `out[ch(i)] += a[i] b[i]` in one stage
/// (one workgroup per channel), for parameters with many channels; few channels over many
/// elements take [`ChannelDotPartial`] and [`ChannelSum`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChannelDot {
    pub count: usize,
    pub ch: Channels,
    pub out_len: usize,
}

/// `[partials | a, b]`: the first stage of a per-channel parameter's gradient
/// `out[ch(i)] += a[i] b[i]`: `partials [blocks, channels]` (see
/// [`ew::channel_dot_partial`]; `blocks` is [`ew::channel_blocks`]), one workgroup per
/// (channel, block of 4096 of its elements). Elements are laid out as [`Channels`] says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChannelDotPartial {
    pub count: usize,
    pub group: usize,
    pub channels: usize,
}

/// `[out | partials]`: the second stage, `out[offset + c] += sum over blocks of
/// partials[k, c]` in block order (one workgroup per channel).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChannelSum {
    pub channels: usize,
    pub blocks: usize,
    pub offset: usize,
    pub out_len: usize,
}

impl ChannelDotPartial {
    /// The first stage for elements laid out as `ch` says (its offset is the second stage's).
    pub fn new(count: usize, ch: Channels) -> Self {
        ChannelDotPartial { count, group: ch.group, channels: ch.channels }
    }
    fn ch(&self) -> Channels {
        Channels { group: self.group, channels: self.channels, offset: 0 }
    }
    /// The partials per channel.
    pub fn blocks(&self) -> usize {
        ew::channel_blocks(self.count, self.ch())
    }
}

/// Channel 2.. of 8, three consecutive elements per channel: ragged on purpose.
const EXAMPLE_CH: Channels = Channels { group: 3, channels: 5, offset: 2 };
const MIX_CH: Channels = Channels { group: 1, channels: 5, offset: 0 };

/// A `channel.wgsl` call over `count` elements.
fn channel_call(entry: &'static str, count: usize, ch: Channels) -> KernelCall {
    let consts = vec![("COUNT", u(count)), ("GROUP", u(ch.group)), ("CHANNELS", u(ch.channels))];
    // The row of the parameter is a per-dispatch parameter: one pipeline for every row.
    KernelCall::new("channel", entry, consts, grid_1d(count)).with_params(vec![("s_offset", p(ch.offset))])
}

/// The scale ops read `s[offset .. offset + channels]`.
fn check_scale(ch: Channels, s_len: usize) -> Result<(), String> {
    if ch.offset + ch.channels > s_len {
        return Err(format!("channel offset {} + {} exceeds the scale's {s_len} values", ch.offset, ch.channels));
    }
    Ok(())
}

fn check_mix(ch: Channels) -> Result<(), String> {
    if ch.offset != 0 {
        return Err(format!("mix reads both rows of its [2, {}] parameter; offset must be 0", ch.channels));
    }
    Ok(())
}

impl OpDef for Relu2Fwd {
    fn bindings(&self) -> Vec<BindingSpec> {
        vec![BindingSpec::out(self.count), BindingSpec::rd(self.count)]
    }
    fn kernel(&self) -> KernelCall {
        KernelCall::new("relu2", "relu2_fwd", vec![("COUNT", u(self.count))], grid_1d(self.count))
    }
    /// Per element: max and a square.
    fn cost(&self) -> Cost {
        let c = n64(self.count);
        Cost::elems(2 * c, c, c)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        ew::relu2_fwd(&mut outs[0], ins[0].f())
    }
    fn examples() -> Vec<Self> {
        vec![Relu2Fwd { count: 77 }]
    }
}

impl OpDef for Relu2Bwd {
    fn bindings(&self) -> Vec<BindingSpec> {
        vec![BindingSpec::rw(self.count), BindingSpec::rd(self.count), BindingSpec::rd(self.count)]
    }
    fn kernel(&self) -> KernelCall {
        KernelCall::new("relu2", "relu2_bwd", vec![("COUNT", u(self.count))], grid_1d(self.count))
    }
    /// Per element: max, two products and the accumulation; dx, dy and x loaded.
    fn cost(&self) -> Cost {
        let c = n64(self.count);
        Cost::elems(4 * c, 3 * c, c)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        ew::relu2_bwd(&mut outs[0], ins[0].f(), ins[1].f())
    }
    fn examples() -> Vec<Self> {
        vec![Relu2Bwd { count: 77 }]
    }
}

impl OpDef for ScaleFwd {
    fn bindings(&self) -> Vec<BindingSpec> {
        vec![BindingSpec::out(self.count), BindingSpec::rd(self.count), BindingSpec::rd(self.s_len)]
    }
    fn check(&self) -> Result<(), String> {
        check_scale(self.ch, self.s_len)
    }
    fn kernel(&self) -> KernelCall {
        channel_call("scale_fwd", self.count, self.ch)
    }
    /// Per element: x and s loaded, one product.
    fn cost(&self) -> Cost {
        let c = n64(self.count);
        Cost::elems(c, 2 * c, c)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        ew::scale_fwd(&mut outs[0], ins[0].f(), ins[1].f(), self.ch)
    }
    fn examples() -> Vec<Self> {
        vec![ScaleFwd { count: 75, ch: EXAMPLE_CH, s_len: 8 }]
    }
}

impl OpDef for ScaleBwd {
    fn bindings(&self) -> Vec<BindingSpec> {
        vec![BindingSpec::rw(self.count), BindingSpec::rd(self.count), BindingSpec::rd(self.s_len)]
    }
    fn check(&self) -> Result<(), String> {
        check_scale(self.ch, self.s_len)
    }
    fn kernel(&self) -> KernelCall {
        channel_call("scale_bwd", self.count, self.ch)
    }
    /// Per element: dy, s and dx loaded, a product and the accumulation.
    fn cost(&self) -> Cost {
        let c = n64(self.count);
        Cost::elems(2 * c, 3 * c, c)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        ew::scale_bwd(&mut outs[0], ins[0].f(), ins[1].f(), self.ch)
    }
    fn examples() -> Vec<Self> {
        vec![ScaleBwd { count: 75, ch: EXAMPLE_CH, s_len: 8 }]
    }
}

impl OpDef for ScaledAddFwd {
    fn bindings(&self) -> Vec<BindingSpec> {
        let (n, out, rd) = (self.count, BindingSpec::out, BindingSpec::rd);
        vec![out(n), rd(n), rd(n), rd(self.s_len)]
    }
    fn check(&self) -> Result<(), String> {
        check_scale(self.ch, self.s_len)
    }
    fn kernel(&self) -> KernelCall {
        channel_call("scaled_add_fwd", self.count, self.ch)
    }
    /// Per element: a, s and b loaded, a product and an add.
    fn cost(&self) -> Cost {
        let c = n64(self.count);
        Cost::elems(2 * c, 3 * c, c)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        ew::scaled_add_fwd(&mut outs[0], ins[0].f(), ins[1].f(), ins[2].f(), self.ch)
    }
    fn examples() -> Vec<Self> {
        vec![ScaledAddFwd { count: 75, ch: EXAMPLE_CH, s_len: 8 }]
    }
}

impl OpDef for ScaledAddBwd {
    fn bindings(&self) -> Vec<BindingSpec> {
        let (n, rw, rd) = (self.count, BindingSpec::rw, BindingSpec::rd);
        vec![rw(n), rw(n), rd(n), rd(self.s_len)]
    }
    fn check(&self) -> Result<(), String> {
        check_scale(self.ch, self.s_len)
    }
    fn kernel(&self) -> KernelCall {
        channel_call("scaled_add_bwd", self.count, self.ch)
    }
    /// Per element: dout, da, s and db loaded, da and db stored; an add, a product, an add.
    fn cost(&self) -> Cost {
        let c = n64(self.count);
        Cost::elems(3 * c, 4 * c, 2 * c)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        let (da, db) = outs.split_at_mut(1);
        ew::scaled_add_bwd(&mut da[0], &mut db[0], ins[0].f(), ins[1].f(), self.ch)
    }
    fn examples() -> Vec<Self> {
        vec![ScaledAddBwd { count: 75, ch: EXAMPLE_CH, s_len: 8 }]
    }
}

impl OpDef for MixFwd {
    fn bindings(&self) -> Vec<BindingSpec> {
        let (n, out, rd) = (self.count, BindingSpec::out, BindingSpec::rd);
        vec![out(n), rd(n), rd(n), rd(2 * self.ch.channels)]
    }
    fn check(&self) -> Result<(), String> {
        check_mix(self.ch)
    }
    fn kernel(&self) -> KernelCall {
        channel_call("mix_fwd", self.count, self.ch)
    }
    /// Per element: both mix rows, a and b loaded; two products and an add.
    fn cost(&self) -> Cost {
        let c = n64(self.count);
        Cost::elems(3 * c, 4 * c, c)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        ew::mix_fwd(&mut outs[0], ins[0].f(), ins[1].f(), ins[2].f(), self.ch)
    }
    fn examples() -> Vec<Self> {
        vec![MixFwd { count: 75, ch: MIX_CH }]
    }
}

impl OpDef for MixBwd {
    fn bindings(&self) -> Vec<BindingSpec> {
        let (n, rw, rd) = (self.count, BindingSpec::rw, BindingSpec::rd);
        vec![rw(n), rw(n), rd(n), rd(2 * self.ch.channels)]
    }
    fn check(&self) -> Result<(), String> {
        check_mix(self.ch)
    }
    fn kernel(&self) -> KernelCall {
        channel_call("mix_bwd", self.count, self.ch)
    }
    /// Per element: dout, both mix rows, da and db loaded, da and db stored; two products, two adds.
    fn cost(&self) -> Cost {
        let c = n64(self.count);
        Cost::elems(4 * c, 5 * c, 2 * c)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        let (da, db) = outs.split_at_mut(1);
        ew::mix_bwd(&mut da[0], &mut db[0], ins[0].f(), ins[1].f(), self.ch)
    }
    fn examples() -> Vec<Self> {
        vec![MixBwd { count: 75, ch: MIX_CH }]
    }
}

impl OpDef for AddInto {
    fn bindings(&self) -> Vec<BindingSpec> {
        vec![BindingSpec::rw(self.count), BindingSpec::rd(self.count)]
    }
    fn kernel(&self) -> KernelCall {
        KernelCall::new("add", "add_into", vec![("COUNT", u(self.count))], grid_1d(self.count))
    }
    /// Per element: dst and src loaded, one add.
    fn cost(&self) -> Cost {
        let c = n64(self.count);
        Cost::elems(c, 2 * c, c)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        ew::add_into(&mut outs[0], ins[0].f())
    }
    fn examples() -> Vec<Self> {
        vec![AddInto { count: 77 }]
    }
}

impl OpDef for ChannelDot {
    fn bindings(&self) -> Vec<BindingSpec> {
        let (n, rw, rd) = (self.count, BindingSpec::rw, BindingSpec::rd);
        vec![rw(self.out_len), rd(n), rd(n)]
    }
    fn check(&self) -> Result<(), String> {
        let Self { count, ch, out_len } = *self;
        if count % (ch.group * ch.channels) != 0 {
            return Err(format!("channel_dot: {count} elements are not whole rows of {} x {}", ch.channels, ch.group));
        }
        if ch.offset + ch.channels > out_len {
            return Err(format!("channel_dot writes past its output of {out_len}"));
        }
        Ok(())
    }
    fn kernel(&self) -> KernelCall {
        let ch = self.ch;
        let consts = vec![("COUNT", u(self.count)), ("GROUP", u(ch.group)), ("CHANNELS", u(ch.channels))];
        // Where the sums go is a per-dispatch parameter: one pipeline for every row.
        let params = vec![("out_offset", p(ch.offset))];
        KernelCall::new("reduce", "channel_dot", consts, [ch.channels as u32, 1, 1]).with_params(params)
    }
    /// Per element: a and b loaded, one multiply-add. Per channel (one 64-lane workgroup):
    /// the tree, and `out[c] +=` (1 load, 1 store, 1 add).
    fn cost(&self) -> Cost {
        let (c, ch) = (n64(self.count), n64(self.ch.channels));
        Cost::elems(2 * c + ch * (tree_flops(64) + 1), 2 * c + ch, ch)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        ew::channel_dot(&mut outs[0], ins[0].f(), ins[1].f(), self.ch)
    }
    fn examples() -> Vec<Self> {
        vec![ChannelDot { count: 75, ch: EXAMPLE_CH, out_len: 9 }]
    }
}

impl OpDef for ChannelDotPartial {
    fn bindings(&self) -> Vec<BindingSpec> {
        let (n, out, rd) = (self.count, BindingSpec::out, BindingSpec::rd);
        vec![out(self.blocks() * self.channels), rd(n), rd(n)]
    }
    fn check(&self) -> Result<(), String> {
        let Self { count, group, channels } = *self;
        if count == 0 || count % (group * channels) != 0 {
            return Err(format!("channel_dot_partial: {count} elements are not whole rows of {channels} x {group}"));
        }
        check_grid_dim("channel_dot_partial (channels)", channels)?;
        check_grid_dim("channel_dot_partial (blocks)", self.blocks())
    }
    fn kernel(&self) -> KernelCall {
        let consts = vec![("COUNT", u(self.count)), ("GROUP", u(self.group)), ("CHANNELS", u(self.channels))];
        KernelCall::new("reduce", "channel_dot_partial", consts, [self.channels as u32, self.blocks() as u32, 1])
    }
    /// Per element: a and b loaded, one multiply-add. Per (channel, block) workgroup of 64
    /// lanes: the tree and one store.
    fn cost(&self) -> Cost {
        let (c, wg) = (n64(self.count), n64(self.channels * self.blocks()));
        Cost::elems(2 * c + wg * tree_flops(64), 2 * c, wg)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        ew::channel_dot_partial(&mut outs[0], ins[0].f(), ins[1].f(), self.ch())
    }
    fn examples() -> Vec<Self> {
        // Groups of three over five channels; one channel whose 9,000 elements span three
        // blocks, the last partial.
        vec![ChannelDotPartial::new(75, EXAMPLE_CH), ChannelDotPartial { count: 9000, group: 1, channels: 1 }]
    }
}

impl OpDef for ChannelSum {
    fn bindings(&self) -> Vec<BindingSpec> {
        vec![BindingSpec::rw(self.out_len), BindingSpec::rd(self.blocks * self.channels)]
    }
    fn check(&self) -> Result<(), String> {
        let Self { channels, offset, out_len, .. } = *self;
        if offset + channels > out_len {
            return Err(format!("channel_sum writes {channels} values from {offset}, past its output of {out_len}"));
        }
        check_grid_dim("channel_sum (channels)", channels)
    }
    fn kernel(&self) -> KernelCall {
        let consts = vec![("CHANNELS", u(self.channels)), ("BLOCKS", u(self.blocks))];
        let params = vec![("out_offset", p(self.offset))];
        KernelCall::new("reduce", "channel_sum", consts, [self.channels as u32, 1, 1]).with_params(params)
    }
    /// Per channel (one 64-lane workgroup): its partials loaded and added, the tree, and
    /// `out[c] +=` (1 load, 1 add, 1 store).
    fn cost(&self) -> Cost {
        let (ch, blocks) = (n64(self.channels), n64(self.blocks));
        Cost::elems(ch * (blocks + tree_flops(64) + 1), ch * (blocks + 1), ch)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        ew::channel_sum(&mut outs[0], ins[0].f(), self.channels, self.offset)
    }
    fn examples() -> Vec<Self> {
        // Into entries 2..7 of 9; more blocks than the 64 lanes.
        vec![
            ChannelSum { channels: 5, blocks: 3, offset: 2, out_len: 9 },
            ChannelSum { channels: 2, blocks: 150, offset: 0, out_len: 2 },
        ]
    }
}
