//! The parts of an ELF object the dynamic loader reads to start it: the program interpreter,
//! DT_NEEDED, DT_RPATH and DT_RUNPATH, read through bounded reads of the image's files.
