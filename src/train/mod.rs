//! Training on long-memory tasks (THEORY.md §9): the tasks and their baselines ([`tasks`]), Adam
//! and global-norm clipping as PyTorch computes them ([`optim`]).

pub mod optim;
pub mod tasks;
pub mod trainer;
