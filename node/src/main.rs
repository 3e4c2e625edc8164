fn main() -> std::process::ExitCode {
    sparebox_node::cli::main()
}
