fn main() -> std::process::ExitCode {
    facteur::cli::main()
}
