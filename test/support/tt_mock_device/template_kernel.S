/* TEST DOUBLE: the one object the kernel-compiler stand-in hands out for every compile.
   A text entry plus a store to a data word: the data reference gives the object a .rela.text
   section, which tt-metal's relocation of kernels to their load address expects. */
    .option norelax
    .text
    .globl _start
_start:
    lui     a5, %hi(template_word)
    sw      zero, %lo(template_word)(a5)
    ret

    .data
    .globl template_word
template_word:
    .word   1
