/* TEST DOUBLE of the SFPI kernel compiler (riscv-tt-elf-g++), for the mock-device dry-run only.
 *
 * tt-metal JIT-builds firmware and every kernel it dispatches by calling this program. The real
 * compiler is not obtainable here, so: a compile (-c, or -x for the precompiled header) writes a
 * fixed rv32 template object (and the -MF depfile); a link runs stock binutils ld with the
 * linker script (-T), library dirs (-L) and firmware symbols (--just-symbols) tt-metal passes,
 * so every ELF gets the real memory layout tt-metal then reads. No code is ever compiled.
 * Build: cc -O2 -DTEMPLATE_OBJ='"..."' -DLINKER='"..."' kernel_cc_stand_in.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef TEMPLATE_OBJ
#error "build with -DTEMPLATE_OBJ=<path of the rv32 template object>"
#endif
#ifndef LINKER
#define LINKER "riscv64-unknown-elf-ld"
#endif

static const char *arg_after(int argc, char **argv, const char *flag) {
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], flag) == 0) return argv[i + 1];
    return NULL;
}

static int has_arg(int argc, char **argv, const char *flag) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], flag) == 0) return 1;
    return 0;
}

static int copy_file(const char *src, const char *dst) {
    FILE *in = fopen(src, "rb"), *out = in ? fopen(dst, "wb") : NULL;
    char buf[8192];
    size_t n;
    if (!in || !out) {
        fprintf(stderr, "kernel-cc stand-in: cannot copy %s -> %s\n", src, dst);
        if (in) fclose(in);
        return 1;
    }
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);
    fclose(in);
    return fclose(out) != 0;
}

/* The source file of a compile: the first operand that is not an option's value. */
static const char *source_of(int argc, char **argv) {
    static const char *with_value[] = {"-o", "-MF", "-MT", "-include", "-x", "-I", NULL};
    for (int i = 1; i < argc; i++) {
        int skip = 0;
        for (const char **f = with_value; *f; f++) skip |= strcmp(argv[i], *f) == 0;
        if (skip) { i++; continue; }
        if (argv[i][0] != '-') return argv[i];
    }
    return "";
}

static int compile(int argc, char **argv, const char *out) {
    const char *dep = arg_after(argc, argv, "-MF");
    if (copy_file(TEMPLATE_OBJ, out)) return 1;
    if (dep) {
        FILE *f = fopen(dep, "w");
        if (!f) return 1;
        fprintf(f, "%s: %s\n", out, source_of(argc, argv));
        fclose(f);
    }
    return 0;
}

static int link_elf(int argc, char **argv, const char *out) {
    char **cmd = calloc((size_t)argc + 16, sizeof *cmd);
    int n = 0;
    const char *fixed[] = {LINKER, "-m", "elf32lriscv", "-z", "max-page-size=16", "-z",
                           "common-page-size=16", "--emit-relocs", "--no-warn-rwx-segments"};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) cmd[n++] = (char *)fixed[i];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "-L", 2) == 0 || strncmp(a, "-T", 2) == 0) cmd[n++] = argv[i];
        else if (strncmp(a, "-Wl,--just-symbols=", 19) == 0) cmd[n++] = argv[i] + 4;
    }
    cmd[n++] = TEMPLATE_OBJ;
    cmd[n++] = "-o";
    cmd[n++] = (char *)out;
    cmd[n] = NULL;
    execvp(cmd[0], cmd);
    perror("kernel-cc stand-in: exec " LINKER);
    return 127;
}

int main(int argc, char **argv) {
    const char *log = getenv("DPT_MOCK_CC_LOG");
    if (log) {
        FILE *f = fopen(log, "a");
        if (f) {
            for (int i = 0; i < argc; i++) fprintf(f, "%s%c", argv[i], i + 1 < argc ? ' ' : '\n');
            fclose(f);
        }
    }
    if (has_arg(argc, argv, "--version") || has_arg(argc, argv, "-dumpversion")) {
        puts("riscv-tt-elf-g++ (dpt_ros kernel-compiler TEST DOUBLE: no code is compiled) 0.0");
        return 0;
    }
    const char *out = arg_after(argc, argv, "-o");
    if (!out) {
        fprintf(stderr, "kernel-cc stand-in: no -o in the command; nothing to do\n");
        return 1;
    }
    if (has_arg(argc, argv, "-c") || has_arg(argc, argv, "-x")) return compile(argc, argv, out);
    return link_elf(argc, argv, out);
}
